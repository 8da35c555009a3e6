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
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from pydantic import ValidationError

from looptool.core.codec import render_label
from looptool.core.match import NO_CALL_KINDS
from looptool.core.near_dup import ShingleIndex, jaccard, rows_index, shingles
from looptool.core.render import render_conversation, render_tools
from looptool.core.rules import check_calls
from looptool.core.tables import (
    EXPANSIONS,
    label_from_json,
    rows_to_table,
    sample_from_row,
    sample_to_row,
)
from looptool.core.types import (
    Label,
    Message,
    Sample,
    ToolCall,
    ToolSpec,
    ToolSpecError,
    canonical_json,
    content_hash,
)
from looptool.engines.base import ChatRequest, ChoiceRequest, Engine, Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.engines.placement import EngineSource, close_engine
from looptool.loop import edde_template  # noqa: F401  (registers the template tasks)
from looptool.loop.judge import supports_choice
from looptool.loop.judge_parse import strip_think
from looptool.loop.probe import unique_samples
from looptool.params.loop import LoopParams
from looptool.prompts import load_prompt

SCENARIO_HINTS = {
    "complexity": "Make the situation more involved: more turns, more details, or several calls.",
    "user_persona": "Write the user as a different kind of person with their own background and goals.",
    "interaction_style": "Change how the user talks: terse, chatty, indirect or very formal.",
    "data_variation": "Keep the task but use different concrete values of the same kinds.",
    "domain_shift": "Move the same kind of task into a different domain or product.",
}
VERIFY_OPTIONS = ("VALID", "INVALID")
EDDE_TASK, VERIFY_TASK = "edde", "edde_verify"


@dataclass
class ErrorSeed:
    sample_id: str
    row: dict  # the D_j row
    sample: Sample  # with the correct label (the prediction for LR seeds)
    wrong: str  # the wrong step as text
    analysis: str
    outcome: str  # MR | LR


@dataclass
class Child:
    parent: ErrorSeed
    index: int
    scenario: str
    raw: str = ""
    sample: Sample | None = None
    reject_tier: str | None = None
    reject_reason: str | None = None
    shingles: frozenset[str] = field(default_factory=frozenset)


def error_seeds(dataset: pa.Table, probe: pa.Table, verdicts: pa.Table) -> list[ErrorSeed]:
    """ES = MR + LR with the corrected label; the wrong step is the prediction (MR) or
    the replaced label (LR)."""
    ds = pl.from_arrow(unique_samples(dataset))
    vd = pl.from_arrow(verdicts).filter(pl.col("outcome").is_in(["MR", "LR"]))
    pr = pl.from_arrow(probe).select("sample_id", "raw_text", "prediction")
    assert (
        isinstance(ds, pl.DataFrame)
        and isinstance(vd, pl.DataFrame)
        and isinstance(pr, pl.DataFrame)
    )
    joined = (
        vd.select("sample_id", "outcome", "reason", "analysis", "label_after", "label_before")
        .join(ds, on="sample_id", how="inner", maintain_order="left")
        .join(pr, on="sample_id", how="left", maintain_order="left")
    )
    seeds = []
    for r in joined.iter_rows(named=True):
        sample = sample_from_row(r)
        if r["outcome"] == "LR" and r["label_after"] is None:
            raise ValueError(f"verdicts: LR row {r['sample_id']} has no label_after")
        if r["outcome"] == "LR":
            sample = Sample(
                tools=sample.tools, context=sample.context, label=label_from_json(r["label_after"])
            )
            wrong = render_label(label_from_json(r["label_before"]))
        elif r["prediction"] is not None:
            wrong = render_label(label_from_json(r["prediction"]))
        else:
            wrong = f"(unparseable output)\n{(r['raw_text'] or '')[:1500]}"
        seeds.append(
            ErrorSeed(r["sample_id"], r, sample, wrong, r["analysis"] or r["reason"], r["outcome"])
        )
    return seeds


def draw_scenario(scenarios: Sequence[str], seed: int, parent_id: str, index: int) -> str:
    h = int(
        content_hash({"seed": seed, "parent": parent_id, "child": index, "use": "scenario"}), 16
    )
    return scenarios[h % len(scenarios)]


def child_seed(seed: int, parent_id: str, index: int) -> int:
    return int(
        content_hash({"seed": seed, "parent": parent_id, "child": index, "use": "sampling"}), 16
    ) % (2**31)


def generation_request(
    es: ErrorSeed, scenario: str, index: int, date: str, params: LoopParams, seed: int
) -> ChatRequest:
    s = es.sample
    user = load_prompt("edde_user").format(
        date=date,
        tools=render_tools(s.tools),
        conversation=render_conversation(s.context),
        correct=render_label(s.label) or "(no call)",
        wrong=es.wrong,
        analysis=es.analysis,
        scenario=scenario,
        scenario_hint=SCENARIO_HINTS.get(scenario, f"Apply the constraint '{scenario}'."),
    )
    return ChatRequest(
        messages=[
            {"role": "system", "content": load_prompt("edde_system").strip()},
            {"role": "user", "content": user},
        ],
        params=SamplingParams(
            max_tokens=params.expand.max_tokens,
            temperature=params.expand.temperature,
            seed=child_seed(seed, es.sample_id, index),
        ),
        chat_template_kwargs={"enable_thinking": params.expand.thinking},
        task=EDDE_TASK,
        payload={
            "tools": s.tools_json(),
            "context": s.context_json(),
            "label": s.label.to_json(),
            "scenario": scenario,
            "child": index,
            "parent_id": es.sample_id,
        },
    )


# --- parsing the generator's answer -----------------------------------------------------

_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_object(text: str) -> dict:
    body = strip_think(text).strip()
    fenced = _FENCE_RE.findall(body)
    if fenced:
        body = fenced[0].strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the output")
    try:
        obj = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError("output is not a JSON object")
    return obj


def _call(raw: object, where: str) -> ToolCall:
    if (
        isinstance(raw, dict)
        and raw.get("type") == "function"
        and isinstance(raw.get("function"), dict)
    ):
        raw = raw["function"]
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError(f"{where}: a call needs a 'name'")
    args = raw.get("arguments", {})
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    if not isinstance(args, dict):
        raise ValueError(f"{where}: 'arguments' must be an object")
    return ToolCall(name=raw["name"], arguments=args)


def parse_child(text: str, seed_tools: list[ToolSpec]) -> Sample:
    """The generator's JSON answer as a Sample; raises ValueError naming the problem."""
    obj = _json_object(text)
    by_name = {t.name: t for t in seed_tools}
    tools: list[ToolSpec] = []
    raw_tools = obj.get("tools")
    if raw_tools is None:
        tools = list(seed_tools)
    elif not isinstance(raw_tools, list) or not raw_tools:
        raise ValueError("'tools' must be a non-empty list")
    else:
        for i, t in enumerate(raw_tools):
            if isinstance(t, str):
                if t not in by_name:
                    raise ValueError(f"tools[{i}]: {t!r} is not a function of the seed")
                tools.append(by_name[t])
            else:
                try:
                    tools.append(ToolSpec.from_any(t, f"tools[{i}]"))
                except ToolSpecError as exc:
                    raise ValueError(str(exc)) from None
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ValueError("duplicate function names in 'tools'")
    ctx = obj.get("context")
    if not isinstance(ctx, list) or not ctx:
        raise ValueError("'context' must be a non-empty list of messages")
    messages = []
    for i, m in enumerate(ctx):
        if not isinstance(m, dict):
            raise ValueError(f"context[{i}]: not an object")
        calls = [
            _call(c, f"context[{i}].tool_calls[{k}]")
            for k, c in enumerate(m.get("tool_calls") or [])
        ]
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            content = canonical_json(content)
        try:
            messages.append(
                Message(
                    role=m.get("role"), content=content or "", tool_calls=calls, name=m.get("name")
                )
            )
        except ValidationError as exc:
            raise ValueError(f"context[{i}]: {exc.errors()[0]['msg']}") from None
    lab = obj.get("label")
    if not isinstance(lab, dict):
        raise ValueError("'label' must be an object with 'calls' (or 'text')")
    calls = [_call(c, f"label.calls[{k}]") for k, c in enumerate(lab.get("calls") or [])]
    text = lab.get("text")
    if calls and text:
        raise ValueError("label has both calls and text")
    if not calls and not (isinstance(text, str) and text.strip()):
        raise ValueError("label has neither calls nor a text reply")
    kind = lab.get("kind")  # a no-call child's kind; without one its text is read
    if kind is not None and (calls or kind not in NO_CALL_KINDS):
        raise ValueError(f"label.kind {kind!r}: only a text reply has one, {NO_CALL_KINDS}")
    label = Label(calls=calls) if calls else Label(text=text, kind=kind)
    return Sample(tools=tools, context=messages, label=label)


# --- verification tiers -----------------------------------------------------------------


def rule_violation(sample: Sample) -> str | None:
    """The first structural / schema problem of a child, or None."""
    if sample.context[-1].role not in ("user", "tool"):
        return f"context ends with a {sample.context[-1].role} turn"
    if not any(m.role == "user" for m in sample.context):
        return "context has no user turn"
    for i, m in enumerate(sample.context):
        vs = check_calls(m.tool_calls, sample.tools) if m.tool_calls else []
        if vs:
            return f"context[{i}] call: {vs[0].rule} {vs[0].name} {vs[0].param}".rstrip()
    vs = check_calls(sample.label.calls, sample.tools)
    if vs:
        return f"label: {vs[0].rule} {vs[0].name} {vs[0].param}".rstrip()
    return None


def verify_requests(
    children: list[Child], date: str, thinking: bool = False
) -> list[ChoiceRequest]:
    out = []
    for c in children:
        assert c.sample is not None
        s = c.sample
        user = (
            f"Current date: {date}\n\n## Functions\n{render_tools(s.tools)}\n\n## Conversation\n"
            f"{render_conversation(s.context)}\n\n## Reference next step\n{render_label(s.label)}"
        )
        out.append(
            ChoiceRequest(
                messages=[
                    {"role": "system", "content": load_prompt("edde_verify").strip()},
                    {"role": "user", "content": user},
                ],
                options=VERIFY_OPTIONS,
                chat_template_kwargs={"enable_thinking": thinking},
                task=VERIFY_TASK,
                payload={
                    "tools": s.tools_json(),
                    "context": s.context_json(),
                    "label": s.label.to_json(),
                },
            )
        )
    return out


def llm_verify(
    engine: Engine, children: list[Child], date: str, thinking: bool = False
) -> list[str | Failed]:
    """VALID / INVALID per child (constrained choice, else a strict one-word reading);
    a :class:`Failed` where the verifier's request failed."""
    reqs = verify_requests(children, date, thinking)
    if not reqs:
        return []
    if supports_choice(engine):
        return engine.choose(reqs)
    gens = engine.generate(
        [
            ChatRequest(
                messages=r.messages,
                params=SamplingParams(max_tokens=8),
                chat_template_kwargs=r.chat_template_kwargs,
                task=r.task,
                payload=r.payload,
            )
            for r in reqs
        ]
    )
    out: list[str | Failed] = []
    for g in gens:
        if isinstance(g, Failed):
            out.append(g)
            continue
        word = strip_think(g[0].text).strip()
        out.append(word if word in VERIFY_OPTIONS else f"UNPARSED:{word[:40]}")
    return out


# --- driver -----------------------------------------------------------------------------


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


def heldout_index(heldout: pa.Table | None, threshold: float) -> ShingleIndex | None:
    """A near-duplicate index over the held-out samples (None without a held-out table);
    ValueError naming the row when one does not rebuild into a sample."""
    if heldout is None:
        return None
    rows = heldout.select(["sample_id", "tools", "context", "label"]).to_pylist()
    return rows_index(rows, threshold, "held-out")


def heldout_duplicate(index: ShingleIndex | None, sid: str, sh: frozenset[str]) -> str | None:
    """Why a child leaks a held-out sample (same sample_id, or a near-duplicate), or None."""
    if index is None:
        return None
    if sid in index:
        return f"same sample_id as held-out sample {sid}"
    hit = index.most_similar(sh)
    if hit is None:
        return None
    return f"near-duplicate of held-out sample {hit[0]} (jaccard {hit[1]:.3f})"


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
