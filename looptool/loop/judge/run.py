"""Judge-guided label verification (JGLV, paper step c) as a cascade (DESIGN §3).

Every probe mismatch gets one verdict:

- tier 1 ``rules`` (first, so it takes precedence over tier 0): schema rules
  (:func:`looptool.core.rules.check_calls`): prediction invalid and label valid ->
  PRED_WRONG (a wrong-case enum value is an error seed, not a surface variant); both
  invalid -> BOTH_WRONG; label invalid and prediction valid -> LABEL_WRONG
  (``rules_label_wrong: accept``) or a candidate the LLM confirms (``confirm``:
  prediction right -> LABEL_WRONG, else BOTH_WRONG);
- tier 0 ``equiv``, for the mismatches the rules leave with both sides valid: the
  prediction's calls equal the label's after normalization -> BOTH_CORRECT. No-call
  answers are never normalized: a clarification against an irrelevance label (or back)
  is a real mismatch (the label's kind vs :func:`looptool.core.match.no_call_kind` of
  the prediction) and goes to the LLM;
- tier 2 ``llm``: one or several judge models see tools, conversation, date and the two
  responses as "A" and "B" (order fixed, seeded-random or both), answer with a
  position-relative verdict read by constrained choice or a strict parser; unreadable ->
  UNPARSED with the raw text. Disagreements (orders, models) go through ``tie_break``.

Outcomes (Alg. 1): PRED_WRONG -> MR; LABEL_WRONG -> LR (label replaced by the prediction,
old label kept in ``label_before``, the new label's kind in ``kind_after``); BOTH_CORRECT ->
HPPL when its PPL reaches the HPPL cut of its kind group (``hppl_groups``) else KEPT_OUT;
BOTH_WRONG -> DROPPED; UNPARSED -> ``unparsed_outcome``. A mismatch whose probe request
failed (``engine_failed``) gets verdict UNPARSED, tier ``engine``, outcome DROPPED: there
is no prediction to judge. A judge request that fails is a vote with that error.

This module is the driver: it reads the mismatches (:func:`mismatch_items`), runs the
tiers (:mod:`~looptool.loop.judge.rules`, :mod:`~looptool.loop.judge.vote`), relabels, and
assigns the outcomes (:func:`assign_both_correct` for BOTH_CORRECT); it is the only module
of the judge that opens engines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache

import polars as pl
import pyarrow as pa

from looptool.core.tables import VERDICTS, label_from_json, rows_to_table, sample_kind
from looptool.core.types import Message, Sample, ToolSpec, canonical_json
from looptool.engines.base import Engine
from looptool.engines.failures import ENGINE_FAILED
from looptool.engines.placement import EngineSource, close_engine, open_source
from looptool.loop.judge.metrics import judge_metrics
from looptool.loop.judge.rules import tier0, tier1
from looptool.loop.judge.types import OUTCOME_OF, Decision, Item, JudgeResult, Vote
from looptool.loop.judge.vote import decide_llm, item_orders, run_llm_tier
from looptool.loop.probe import (
    hppl_count,
    hppl_threshold,
    kind_group_col,
    rank_by_ppl,
    unique_samples,
)
from looptool.params.loop import JudgeParams, LoopParams


def mismatch_items(dataset: pa.Table, probe: pa.Table) -> list[Item]:
    """Probe mismatches joined with their D_j rows, in probe order."""
    ds = pl.from_arrow(unique_samples(dataset)).select("sample_id", "tools", "context", "label")
    pr = pl.from_arrow(probe).filter(~pl.col("match"))
    assert isinstance(ds, pl.DataFrame) and isinstance(pr, pl.DataFrame)
    joined = pr.join(ds, on="sample_id", how="left", maintain_order="left")
    missing = joined.filter(pl.col("label").is_null()).get_column("sample_id").to_list()
    if missing:
        raise ValueError(f"probe rows not in the dataset (first: {missing[0]}): stale probe table?")
    # Many samples share one tool list: parse each distinct tools JSON once.
    tools_of = lru_cache(maxsize=8192)(
        lambda s: tuple(ToolSpec.model_validate(t) for t in json.loads(s))
    )
    items = []
    for r in joined.iter_rows(named=True):
        context = [Message.model_validate(m) for m in json.loads(r["context"])]
        items.append(
            Item(
                sample_id=r["sample_id"],
                sample=Sample(
                    tools=list(tools_of(r["tools"])),
                    context=context,
                    label=label_from_json(r["label"], r["kind"]),  # the probe row's kind
                ),
                label_json=r["label"],
                prediction=label_from_json(r["prediction"])
                if r["prediction"] is not None
                else None,
                raw_text=r["raw_text"],
                parse_error=r["parse_error"],
                ppl=r["ppl"],
                engine_error=(r.get("engine_error") or ENGINE_FAILED)
                if r["match_reason"] == ENGINE_FAILED
                else None,
            )
        )
    return items


def _outcome(d: Decision, item: Item, params: JudgeParams) -> str:
    if d.tier == "engine":
        return "DROPPED"
    if d.verdict == "UNPARSED":
        return "DROPPED" if item.candidate else params.unparsed_outcome
    return OUTCOME_OF.get(d.verdict, "BOTH_CORRECT")


def run_judge(
    judges: Sequence[EngineSource],
    dataset: pa.Table,
    probe: pa.Table,
    *,
    iteration: int,
    date: str,
    params: LoopParams,
    seed: int = 0,
) -> JudgeResult:
    """Judge every mismatch of ``probe``; returns the VERDICTS table and its metrics.

    ``judges`` are engines or openers; an opener's engine is opened for its turn and
    closed before the next judge opens (one vLLM engine per process)."""
    jp = params.judge
    if not judges and params.ablation != "no_jglv":
        raise ValueError("run_judge needs at least one judge engine")
    items = mismatch_items(dataset, probe)
    decisions: list[Decision | None] = [None] * len(items)
    pending: list[int] = []
    for i, it in enumerate(items):
        if it.engine_error is not None:
            decisions[i] = Decision("UNPARSED", "engine", f"probe {it.engine_error}")
            continue
        if params.ablation == "no_jglv":
            decisions[i] = Decision(
                "PRED_WRONG", "none", "ablation no_jglv: every mismatch is a model error"
            )
            continue
        # Rules first: a schema-invalid side is never excused as a surface variant.
        d = tier1(it, jp) if jp.rules else None
        if d is None and jp.equivalence and not it.candidate:
            d = tier0(it)
        if d is None:
            pending.append(i)
        decisions[i] = d

    work = [(items[i], o) for i in pending for o in item_orders(items[i], jp, seed)]
    votes_by_item: dict[int, list[Vote]] = {i: [] for i in pending}
    slot = [i for i in pending for _ in item_orders(items[i], jp, seed)]
    cache_stats = []
    opened: list[Engine] = []
    for k, source in enumerate(judges):
        engine = open_source(source)
        opened.append(engine)
        try:
            for i, v in zip(slot, run_llm_tier(engine, work, date, jp), strict=True):
                v.judge = k
                votes_by_item[i].append(v)
        finally:
            if engine is not source:
                close_engine(engine)
        stats = engine.stats() if hasattr(engine, "stats") else {}
        # openai backend: the endpoint's capabilities as declared or probed (#14)
        caps = getattr(engine, "capabilities", None)
        stats = {**stats, "capabilities": caps} if isinstance(caps, dict) else stats
        cache_stats.append({"model": engine.model_id, "backend": engine.backend, **stats})
    for i in pending:
        decisions[i] = decide_llm(items[i], votes_by_item[i], jp)

    # A LABEL_WRONG needs a usable prediction to become the new label.
    for i, (it, d) in enumerate(zip(items, decisions, strict=True)):
        assert d is not None
        unusable = it.prediction is None or (
            it.prediction.is_no_call and not (it.prediction.text or "").strip()
        )
        if d.verdict == "LABEL_WRONG" and unusable:
            decisions[i] = Decision(
                "BOTH_WRONG",
                d.tier,
                f"{d.reason}; prediction unparseable or empty, cannot relabel",
                d.analysis,
                d.approach,
                d.judge_model,
                d.order,
                d.raw,
            )

    rows = []
    for it, d in zip(items, decisions, strict=True):
        assert d is not None
        new = (  # the relabeled sample (LABEL_WRONG: the prediction becomes the label)
            Sample(tools=it.sample.tools, context=it.sample.context, label=it.prediction)
            if d.verdict == "LABEL_WRONG" and it.prediction is not None
            else None
        )
        rows.append(
            {
                "sample_id": it.sample_id,
                "iter": iteration,
                "verdict": d.verdict,
                "tier": d.tier,
                "reason": d.reason,
                "analysis": d.analysis,
                "correct_approach": d.approach,
                "judge_model": d.judge_model,
                "response_order": d.order,
                "raw_judge": d.raw,
                "label_before": it.label_json,
                "label_after": canonical_json(new.label.to_json()) if new else None,
                "label_hash_after": new.label.hash if new else None,
                # A call label relabeled to a text answer (or back) changes kind.
                "kind_after": sample_kind(new) if new else None,
                "ppl": it.ppl,
                "outcome": _outcome(d, it, jp),
            }
        )
    table = assign_both_correct(rows_to_table(rows, VERDICTS), probe, params)
    metrics = judge_metrics(
        table,
        n_llm_items=len(pending),
        n_votes=len(work),
        judges=opened,
        params=jp,
        cache=cache_stats,
        failed_votes=sum(
            (v.error or "").startswith(ENGINE_FAILED) for vs in votes_by_item.values() for v in vs
        ),
    )
    return JudgeResult(table, metrics)


def assign_both_correct(verdicts: pa.Table, probe: pa.Table, params: LoopParams) -> pa.Table:
    """BOTH_CORRECT -> HPPL when PPL reaches the mastered HPPL cut, else KEPT_OUT.

    The cut is per kind group unless ``probe.hppl_groups`` is pooled (calls_only: no-call
    samples never join HPPL). For a group without a mastered HPPL sample (no cut), the
    HPPL rule is applied to the group's BOTH_CORRECT samples themselves.
    """
    groups = params.probe.hppl_groups
    df = pl.from_arrow(verdicts)
    kinds = pl.from_arrow(probe.select(["sample_id", "kind"]))
    assert isinstance(df, pl.DataFrame) and isinstance(kinds, pl.DataFrame)
    both = (
        df.filter(pl.col("verdict") == "BOTH_CORRECT")
        .select("sample_id", "ppl")
        .join(kinds.unique("sample_id"), on="sample_id", how="left")
        .filter(pl.col("ppl").is_not_null() & pl.col("ppl").is_finite())
    )
    if groups == "calls_only":
        both = both.filter(kind_group_col() == "call")
    cuts = hppl_threshold(probe, groups)
    both = both.with_columns(
        _cut=(pl.lit("all") if groups == "pooled" else kind_group_col()).replace_strict(
            cuts, default=None, return_dtype=pl.Float64
        )
    )
    above = both.filter(pl.col("ppl") >= pl.col("_cut")).get_column("sample_id")
    pool = rank_by_ppl(both.filter(pl.col("_cut").is_null()), groups)
    chosen = pl.concat([above, pool.head(hppl_count(pool.height, params.probe))["sample_id"]])
    df = df.with_columns(
        outcome=pl.when(pl.col("verdict") != "BOTH_CORRECT")
        .then(pl.col("outcome"))
        .when(pl.col("sample_id").is_in(chosen.implode()))
        .then(pl.lit("HPPL"))
        .otherwise(pl.lit("KEPT_OUT"))
    )
    return df.to_arrow().cast(VERDICTS)
