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
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import polars as pl
import pyarrow as pa

from looptool.core.match import match_normalized
from looptool.core.render import dump_json, render_conversation, render_tools
from looptool.core.rules import check_calls
from looptool.core.tables import VERDICTS, label_from_json, rows_to_table, sample_kind
from looptool.core.types import Label, Message, Sample, ToolSpec, canonical_json, content_hash
from looptool.engines.base import ChatRequest, ChoiceRequest, Engine, Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.engines.placement import EngineSource, close_engine, open_source
from looptool.loop.judge_parse import VERDICT_OPTIONS, parse_judgement, sections, strip_think
from looptool.loop.probe import (
    hppl_count,
    hppl_threshold,
    kind_group_col,
    rank_by_ppl,
    unique_samples,
)
from looptool.params.loop import JudgeParams, LoopParams
from looptool.prompts import load_prompt

OUTCOME_OF = {"PRED_WRONG": "MR", "LABEL_WRONG": "LR", "BOTH_WRONG": "DROPPED"}
# keep_label tie-break: the candidate verdict that changes the least wins.
KEEP_LABEL_PREFERENCE = ("PRED_WRONG", "BOTH_CORRECT", "BOTH_WRONG", "LABEL_WRONG")
ORDERS = ("label_first", "pred_first")


@dataclass
class Item:
    """One mismatch to judge."""

    sample_id: str
    sample: Sample
    label_json: str
    prediction: Label | None  # None when the policy output did not parse
    raw_text: str
    parse_error: str | None
    ppl: float | None
    candidate: bool = False  # tier 1 found the label invalid, the prediction valid
    engine_error: str | None = None  # the probe request failed: nothing to judge


@dataclass
class Decision:
    verdict: str
    tier: str  # none | equiv | rules | llm
    reason: str
    analysis: str | None = None
    approach: str | None = None
    judge_model: str | None = None
    order: str | None = None
    raw: str | None = None


@dataclass
class Vote:
    """One judge model's reading of one order."""

    model: str
    order: str
    raw: str
    option: str | None
    error: str | None
    analysis: str | None = None
    approach: str | None = None
    judge: int = 0  # position in the judge list (two entries may serve the same model)

    @property
    def verdict(self) -> str | None:
        return option_to_verdict(self.option, self.order)


@dataclass
class JudgeResult:
    table: pa.Table
    metrics: dict = field(default_factory=dict)


def option_to_verdict(option: str | None, order: str) -> str | None:
    """Map a position-relative option to a label/prediction verdict."""
    if option is None:
        return None
    if option in ("BOTH_CORRECT", "BOTH_WRONG"):
        return option
    label_is_a = order == "label_first"
    only_label = (option == "ONLY_A") == label_is_a
    return "PRED_WRONG" if only_label else "LABEL_WRONG"


def reconcile(verdicts: Sequence[str | None], rule: str) -> tuple[str, str]:
    """Majority of the parsed verdicts; ties by ``rule``. Returns (verdict, note)."""
    parsed = [v for v in verdicts if v is not None]
    if not parsed:
        return "UNPARSED", "no parseable verdict"
    counts = Counter(parsed)
    top = max(counts.values())
    winners = [v for v in dict.fromkeys(parsed) if counts[v] == top]
    note = "" if len(counts) == 1 else "votes " + "|".join(str(v) for v in verdicts)
    if len(winners) == 1:
        return winners[0], note
    if rule == "drop":
        chosen = "BOTH_WRONG"
    elif rule == "first":
        chosen = winners[0]
    else:
        chosen = min(winners, key=KEEP_LABEL_PREFERENCE.index)
    return chosen, f"{note}; tie_break={rule}"


# --- prompt rendering (readable text, never raw chat-template tokens: DESIGN §5) ---------


def render_response(label: Label | None, raw: str) -> str:
    if label is None:
        return f"(not valid function-call syntax)\n{raw[:2000]}"
    if label.calls:
        return "Function call(s):\n" + "\n".join(dump_json(c.to_json()) for c in label.calls)
    return f"No function call. Text reply:\n{label.text or ''}"


def judge_prompt(item: Item, order: str, date: str, instructions: str) -> list[dict]:
    label_txt = render_response(item.sample.label, "")
    pred_txt = render_response(item.prediction, item.raw_text)
    a, b = (label_txt, pred_txt) if order == "label_first" else (pred_txt, label_txt)
    user = load_prompt("judge_user").format(
        date=date,
        tools=render_tools(item.sample.tools),
        conversation=render_conversation(item.sample.context),
        response_a=a,
        response_b=b,
        instructions=instructions.strip(),
    )
    return [
        {"role": "system", "content": load_prompt("judge_system").strip()},
        {"role": "user", "content": user},
    ]


# --- tiers 0 and 1 ----------------------------------------------------------------------


def tier0(item: Item) -> Decision | None:
    pred = item.prediction
    if pred is None or pred.is_no_call or item.sample.label.is_no_call:
        # Text answers are not normalized: two no-call answers that reach the judge differ
        # in kind (clarify vs irrelevant) or one is empty, which no normalization fixes.
        return None
    res = match_normalized(pred.calls, item.sample.label.calls, item.sample.tools)
    if res.ok:
        return Decision("BOTH_CORRECT", "equiv", "equal after normalization")
    return None


def _violation_text(vs: list) -> str:
    v = vs[0]
    return f"{v.rule} {v.name}.{v.param}".rstrip(".") if v.param else f"{v.rule} {v.name}"


def tier1(item: Item, params: JudgeParams) -> Decision | None:
    """A rules decision, or None (LLM needed); marks LABEL_WRONG candidates on ``item``."""
    tools = item.sample.tools
    label_v = check_calls(item.sample.label.calls, tools)
    if item.prediction is None:
        pred_bad = f"prediction does not parse ({item.parse_error})"
    elif item.prediction.is_no_call and not (item.prediction.text or "").strip():
        pred_bad = "prediction is an empty reply"
    else:
        pv = check_calls(item.prediction.calls, tools)
        pred_bad = f"prediction violates {_violation_text(pv)}" if pv else None
    label_bad = f"label violates {_violation_text(label_v)}" if label_v else None
    if pred_bad and not label_bad:
        return Decision("PRED_WRONG", "rules", pred_bad)
    if pred_bad and label_bad:
        return Decision("BOTH_WRONG", "rules", f"{pred_bad}; {label_bad}")
    if label_bad:
        if params.rules_label_wrong == "accept":
            return Decision("LABEL_WRONG", "rules", f"{label_bad}; prediction is valid")
        item.candidate = True
    return None


# --- tier 2 -----------------------------------------------------------------------------


def supports_choice(engine: Engine) -> bool:
    """Whether ``engine.choose`` is real constrained choice (hf/vllm score or constrain)."""
    flag = getattr(engine, "supports_choice", None)
    if isinstance(flag, bool):
        return flag
    return engine.backend in ("hf", "vllm", "template")


def item_orders(item: Item, params: JudgeParams, seed: int) -> list[str]:
    if params.order == "both":
        return list(ORDERS)
    if params.order == "fixed":
        return ["label_first" if params.fixed_first == "label" else "pred_first"]
    # Seeded per sample, so the order does not depend on batch composition or reruns.
    bit = (
        int(content_hash({"seed": seed, "sample_id": item.sample_id, "use": "judge_order"}), 16) & 1
    )
    return [ORDERS[bit]]


def run_llm_tier(
    engine: Engine, work: list[tuple[Item, str]], date: str, params: JudgeParams
) -> list[Vote]:
    """One vote per (item, order) from one judge model, in ``work`` order."""
    template = {"enable_thinking": params.thinking}
    mode = params.extraction
    if mode == "auto":
        mode = "choose" if supports_choice(engine) else "parse"
    if mode == "parse":
        instr = load_prompt("judge_instr_parse")
        reqs = [
            ChatRequest(
                messages=judge_prompt(it, o, date, instr),
                params=SamplingParams(max_tokens=params.max_tokens, temperature=0.0),
                chat_template_kwargs=template,
            )
            for it, o in work
        ]
        outs = engine.generate(reqs) if reqs else []
        votes = []
        for (_, o), out in zip(work, outs, strict=True):
            if isinstance(out, Failed):
                votes.append(Vote(engine.model_id, o, "", None, failure_note(out)))
                continue
            text = out[0].text
            j = parse_judgement(text)
            votes.append(Vote(engine.model_id, o, text, j.option, j.error, j.analysis, j.approach))
        return votes

    choose_txt = load_prompt("judge_choose").strip()
    # A failed analysis request fails that vote; its choice request is not sent.
    failed: dict[int, Failed] = {}
    if params.analysis_max_tokens > 0:
        instr = load_prompt("judge_instr_analysis")
        prompts = [judge_prompt(it, o, date, instr) for it, o in work]
        gen_reqs = [
            ChatRequest(
                messages=p,
                params=SamplingParams(max_tokens=params.analysis_max_tokens, temperature=0.0),
                chat_template_kwargs=template,
            )
            for p in prompts
        ]
        analyses = []
        for k, out in enumerate(engine.generate(gen_reqs) if gen_reqs else []):
            if isinstance(out, Failed):
                failed[k] = out
                analyses.append("")
            else:
                analyses.append(strip_think(out[0].text).strip())
        choice_msgs = [
            [*p, {"role": "assistant", "content": a}, {"role": "user", "content": choose_txt}]
            for p, a in zip(prompts, analyses, strict=True)
        ]
    else:
        analyses = [""] * len(work)
        choice_msgs = [judge_prompt(it, o, date, choose_txt) for it, o in work]
    asked = [k for k in range(len(work)) if k not in failed]
    choice_reqs = [
        ChoiceRequest(
            messages=choice_msgs[k], options=VERDICT_OPTIONS, chat_template_kwargs=template
        )
        for k in asked
    ]
    picks: dict[int, str | Failed] = dict(failed)
    picks.update(zip(asked, engine.choose(choice_reqs) if choice_reqs else [], strict=True))
    votes = []
    for k, ((_, o), a) in enumerate(zip(work, analyses, strict=True)):
        pick = picks[k]
        if isinstance(pick, Failed):
            votes.append(Vote(engine.model_id, o, a, None, failure_note(pick)))
            continue
        analysis, approach = sections(a)
        ok = pick in VERDICT_OPTIONS
        votes.append(
            Vote(
                engine.model_id,
                o,
                f"{a}\n[choice] {pick}".lstrip(),
                pick if ok else None,
                None if ok else f"choice {pick!r} not an option",
                analysis or (a or None),
                approach,
            )
        )
    return votes


def decide_llm(item: Item, votes: list[Vote], params: JudgeParams) -> Decision:
    """Reconcile orders per model, then models by majority; apply the candidate rule."""
    by_model: dict[int, list[Vote]] = {}
    for v in votes:
        by_model.setdefault(v.judge, []).append(v)
    per_model, notes = [], []
    for vs in by_model.values():
        verdict, note = reconcile([v.verdict for v in vs], params.tie_break)
        per_model.append(None if verdict == "UNPARSED" else verdict)
        if note and len(vs) > 1:
            notes.append(f"{vs[0].model}: orders disagree ({note})")
    verdict, note = reconcile(per_model, params.tie_break)
    if note and len(by_model) > 1:
        notes.append(f"models: {note}")
    errors = [f"{v.order}: {v.error}" for v in votes if v.error]
    if verdict == "UNPARSED":  # why no vote parsed (incl. failed requests), not a tie note
        reason = "; ".join(errors) or "; ".join(notes)
    else:
        reason = "; ".join(notes) or "judge verdict"
    if item.candidate and verdict != "UNPARSED":
        pred_right = verdict in ("LABEL_WRONG", "BOTH_CORRECT")
        verdict = "LABEL_WRONG" if pred_right else "BOTH_WRONG"
        reason = (
            f"label fails schema rules; judge says prediction {'right' if pred_right else 'wrong'}"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    lead = next((v for v in votes if v.verdict == verdict), votes[0])
    orders = sorted({v.order for v in votes})
    return Decision(
        verdict,
        "llm",
        reason,
        analysis=lead.analysis,
        approach=lead.approach,
        judge_model=",".join(vs[0].model for vs in by_model.values()),
        order=orders[0] if len(orders) == 1 else "both",
        raw=canonical_json(
            [
                {
                    "model": v.model,
                    "order": v.order,
                    "raw": v.raw,
                    "option": v.option,
                    "error": v.error,
                }
                for v in votes
            ]
        ),
    )


# --- driver -----------------------------------------------------------------------------


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


def requests_per_vote(engine: Engine, params: JudgeParams) -> int:
    """LLM requests one (item, order) costs on ``engine``: analysis + choice, or one."""
    mode = params.extraction
    if mode == "auto":
        mode = "choose" if supports_choice(engine) else "parse"
    return 2 if mode == "choose" and params.analysis_max_tokens > 0 else 1


def judge_metrics(
    verdicts: pa.Table,
    *,
    n_llm_items: int,
    n_votes: int,
    judges: Sequence[Engine],
    params: JudgeParams,
    cache: list[dict],
    failed_votes: int = 0,
) -> dict:
    """Verdicts per tier, outcomes, unparsed count, LLM calls made vs avoided, cache stats."""
    df = pl.from_arrow(verdicts)
    assert isinstance(df, pl.DataFrame)
    per_tier: dict[str, dict[str, int]] = {}
    for tier, verdict, n in (
        df.group_by("tier", "verdict").len().sort("tier", "verdict").iter_rows()
    ):
        per_tier.setdefault(tier, {})[verdict] = n
    resolved_early = int(df.filter(pl.col("tier").is_in(["equiv", "rules"])).height)
    per_vote = sum(requests_per_vote(e, params) for e in judges)
    orders = 2 if params.order == "both" else 1
    return {
        "n_mismatch": df.height,
        "verdicts": dict(sorted(Counter(df.get_column("verdict").to_list()).items())),
        "verdicts_per_tier": per_tier,
        "outcomes": dict(sorted(Counter(df.get_column("outcome").to_list()).items())),
        "unparsed": int((df.get_column("verdict") == "UNPARSED").sum()),
        # probe requests that failed (tier engine) and judge votes whose request failed
        "probe_engine_failed": int((df.get_column("tier") == "engine").sum()),
        "judge_engine_failed": failed_votes,
        "llm_items": n_llm_items,
        "llm_calls_made": n_votes * per_vote,
        "llm_calls_avoided": resolved_early * orders * per_vote,
        "resolved_by_tiers_0_1": resolved_early,
        "order_disagreements": int(df.get_column("reason").str.contains("orders disagree").sum()),
        "cache": cache,
    }


def label_correction_metrics(verdicts: pa.Table, dataset: pa.Table, noise: pa.Table) -> dict:
    """Precision / recall of LABEL_WRONG relabeling against the recorded clean labels.

    A D_j sample counts as noisy while its current label equals the injected noisy label.
    """
    canon = {"clean": [], "noisy": []}
    for row in noise.select(["clean_label", "noisy_label"]).to_pylist():
        canon["clean"].append(canonical_json(label_from_json(row["clean_label"]).to_json()))
        canon["noisy"].append(canonical_json(label_from_json(row["noisy_label"]).to_json()))
    nz = pl.DataFrame(
        {
            "sample_id": noise.column("sample_id").to_pylist(),
            "clean": canon["clean"],
            "noisy": canon["noisy"],
        }
    )
    ds = pl.from_arrow(unique_samples(dataset)).select("sample_id", "label")
    vd = pl.from_arrow(verdicts).select("sample_id", "verdict", "label_after")
    assert isinstance(ds, pl.DataFrame) and isinstance(vd, pl.DataFrame)
    noisy = ds.join(nz, on="sample_id").filter(pl.col("label") == pl.col("noisy"))
    flagged = vd.filter(pl.col("verdict") == "LABEL_WRONG").join(nz, on="sample_id", how="left")
    noisy_ids = noisy.get_column("sample_id").implode()
    tp = int(flagged.filter(pl.col("sample_id").is_in(noisy_ids)).height)
    fixed = int(flagged.filter(pl.col("label_after") == pl.col("clean")).height)
    judged_noisy = int(vd.filter(pl.col("sample_id").is_in(noisy_ids)).height)

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "noisy_in_dataset": noisy.height,
        "noisy_judged": judged_noisy,
        "relabeled": flagged.height,
        "relabeled_noisy": tp,
        "relabeled_to_clean": fixed,
        "precision": ratio(tp, flagged.height),
        "precision_exact": ratio(fixed, flagged.height),
        "recall": ratio(tp, noisy.height),
        "recall_judged": ratio(tp, judged_noisy),
        "recall_exact": ratio(fixed, noisy.height),
    }
