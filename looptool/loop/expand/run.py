"""Error-driven data expansion (EDDE, paper step d).

Error seeds ES = MR + LR. For each seed, ``k`` children are requested from the generator
role, each with a scenario constraint drawn per child (seeded). The generator sees the
seed's tools, conversation, correct step, the wrong step and the judge's analysis, and
answers with one JSON sample. Each child goes through: parse -> rules tier (schema rules
on the label and on earlier calls, a context that ends on the user's or a tool's turn) ->
duplicate / near-duplicate check against the seed, its accepted siblings and D_j ->
held-out check (a child whose sample_id or near-duplicate is in the held-out split is
rejected, tier ``heldout_dup``: evaluation must not leak into training) ->
LLM tier (a VALID/INVALID check by the generator or judge role; the template backend
serves it with a grounding check). Every child is a row of ``expansions.parquet``,
accepted or with its reject tier and reason (tier ``engine_failed`` when its generator or
verifier request failed).

This module is the driver (:func:`run_expand`) and its metrics; the parts live beside it:
:mod:`~looptool.loop.expand.seeds`, :mod:`~looptool.loop.expand.parse`,
:mod:`~looptool.loop.expand.verify` and :mod:`~looptool.loop.expand.template` (the
template backend's EDDE tasks).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from pydantic import ValidationError

from looptool.core.near_dup import jaccard, shingles
from looptool.core.tables import EXPANSIONS, rows_to_table, sample_to_row
from looptool.core.types import content_hash
from looptool.engines.base import Engine, Failed
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.engines.placement import EngineSource, close_engine
from looptool.loop.expand import template  # noqa: F401  (registers the template tasks)
from looptool.loop.expand.parse import parse_child
from looptool.loop.expand.seeds import (
    Child,
    ErrorSeed,
    draw_scenario,
    error_seeds,
    generation_request,
)
from looptool.loop.expand.verify import heldout_duplicate, heldout_index, llm_verify, rule_violation
from looptool.params.loop import LoopParams


@dataclass
class ExpandResult:
    table: pa.Table
    metrics: dict


def _child_row(c: Child, iteration: int) -> dict:
    es = c.parent
    if c.sample is not None:
        base = sample_to_row(
            c.sample,
            origin="edde",
            born_iter=iteration,
            parent_id=es.sample_id,
            dialogue_id=es.row.get("dialogue_id"),
        )
    else:  # unparsed: no sample to hash, so the id names the parent and the child slot
        base = {
            "sample_id": content_hash(
                {"parent": es.sample_id, "child": c.index, "iter": iteration}
            ),
            "tools": "[]",
            "context": "[]",
            "label": "null",
            "label_hash": "",
            "label_rev": 0,
            "kind": "unparsed",
            "origin": "edde",
            "born_iter": iteration,
            "parent_id": es.sample_id,
            "dialogue_id": es.row.get("dialogue_id"),
            "step": None,
        }
    return {
        **base,
        "iter": iteration,
        "scenario": c.scenario,
        "child_index": c.index,
        "accepted": c.reject_tier is None,
        "reject_tier": c.reject_tier,
        "reject_reason": c.reject_reason,
        "raw_text": c.raw,
    }


def run_expand(
    generator: Engine,
    verifier: EngineSource | None,
    dataset: pa.Table,
    probe: pa.Table,
    verdicts: pa.Table,
    *,
    iteration: int,
    date: str,
    params: LoopParams,
    seed: int = 0,
    heldout: pa.Table | None = None,
) -> ExpandResult:
    """Generate, parse, verify and deduplicate k children per error seed; children that
    duplicate or near-duplicate a ``heldout`` sample are rejected (tier ``heldout_dup``).
    A ``verifier`` opener is opened after the generator is closed, and closed after use."""
    ep = params.expand
    opened: Engine | None = None
    seeds = error_seeds(dataset, probe, verdicts)
    if params.ablation == "no_edde" or ep.k == 0:
        table = EXPANSIONS.empty_table()
        why = "ablation no_edde" if params.ablation == "no_edde" else "k = 0"
        return ExpandResult(table, {"skipped": why, "error_seeds": len(seeds)})

    children = [
        Child(es, i, draw_scenario(ep.scenarios, seed, es.sample_id, i))
        for es in seeds
        for i in range(ep.k)
    ]
    reqs = [generation_request(c.parent, c.scenario, c.index, date, params, seed) for c in children]
    gens = generator.generate(reqs) if reqs else []
    known = set(pl.from_arrow(dataset.select(["sample_id"])).get_column("sample_id").to_list())

    by_parent: dict[str, list[Child]] = {}
    for c, g in zip(children, gens, strict=True):
        by_parent.setdefault(c.parent.sample_id, []).append(c)
        if isinstance(g, Failed):
            c.reject_tier, c.reject_reason = ENGINE_FAILED, f"generator {failure_note(g)}"
            continue
        c.raw = g[0].text
        try:
            c.sample = parse_child(c.raw, c.parent.sample.tools)
        except (ValueError, ValidationError) as exc:
            c.reject_tier, c.reject_reason = "parse", str(exc).splitlines()[0][:300]
            continue
        bad = rule_violation(c.sample)
        if bad:
            c.reject_tier, c.reject_reason = "rules", bad

    held = heldout_index(heldout, ep.near_dup_threshold)
    for parent_id, group in by_parent.items():
        parent_sh = shingles(group[0].parent.sample)
        kept: list[Child] = []
        for c in group:
            if c.reject_tier is not None or c.sample is None:
                continue
            c.shingles = shingles(c.sample)
            sid = c.sample.sample_id
            if (
                sid == parent_id
                or sid in known
                or any(k.sample.sample_id == sid for k in kept if k.sample)
            ):
                c.reject_tier, c.reject_reason = "dedup", f"duplicate sample_id {sid}"
                continue
            sim_seed = jaccard(c.shingles, parent_sh)
            sim_sib = max((jaccard(c.shingles, k.shingles) for k in kept), default=0.0)
            if max(sim_seed, sim_sib) >= ep.near_dup_threshold:
                other = "seed" if sim_seed >= sim_sib else "sibling"
                c.reject_tier = "dedup"
                c.reject_reason = (
                    f"near-duplicate of its {other} (jaccard {max(sim_seed, sim_sib):.3f})"
                )
                continue
            leak = heldout_duplicate(held, sid, c.shingles)
            if leak:
                c.reject_tier, c.reject_reason = "heldout_dup", leak
                continue
            kept.append(c)

    to_verify = [c for c in children if c.reject_tier is None]
    if verifier is not None and ep.llm_verify != "off":
        if callable(verifier):  # an opener: the generator is done, free it first
            close_engine(generator)
            verifier = opened = verifier()
        answers = llm_verify(verifier, to_verify, date, ep.thinking)
        if opened is not None:
            close_engine(opened)
        for c, answer in zip(to_verify, answers, strict=True):
            if isinstance(answer, Failed):
                c.reject_tier, c.reject_reason = ENGINE_FAILED, f"verifier {failure_note(answer)}"
            elif answer != "VALID":
                c.reject_tier, c.reject_reason = "llm", f"verifier answered {answer}"

    table = rows_to_table([_child_row(c, iteration) for c in children], EXPANSIONS)
    verifier_engine = opened or (None if callable(verifier) else verifier)
    return ExpandResult(table, expand_metrics(table, seeds, generator, verifier_engine))


def expand_metrics(
    table: pa.Table, seeds: list[ErrorSeed], generator: Engine, verifier: Engine | None
) -> dict:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    n = df.height
    acc = int(df.get_column("accepted").sum()) if n else 0
    rej = df.filter(~pl.col("accepted"))
    per_scenario = {
        s: {"generated": g, "accepted": a}
        for s, g, a in df.group_by("scenario")
        .agg(pl.len(), pl.col("accepted").sum())
        .sort("scenario")
        .iter_rows()
    }
    reasons = Counter(
        f"{t}: {re.sub(r'[0-9a-f]{16}|[0-9.]+', '#', r)}"
        for t, r in rej.select("reject_tier", "reject_reason").iter_rows()
    )
    cache = []
    for e in (generator, verifier):
        if e is not None and hasattr(e, "stats"):
            cache.append({"model": e.model_id, "backend": e.backend, **e.stats()})
    return {
        "error_seeds": len(seeds),
        "error_seeds_mr": sum(s.outcome == "MR" for s in seeds),
        "error_seeds_lr": sum(s.outcome == "LR" for s in seeds),
        "generated": n,
        "accepted": acc,
        "acceptance_rate": acc / n if n else 0.0,
        "rejected_per_tier": dict(sorted(Counter(rej.get_column("reject_tier").to_list()).items())),
        "top_reject_reasons": dict(reasons.most_common(10)),
        "per_scenario": per_scenario,
        "cache": cache,
    }
