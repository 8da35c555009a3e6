"""Tier 2 of the judge cascade, the LLM tier: the response orders of an item, one vote per
(item, order) from each judge model (constrained choice, or free text read by the strict
parser of :mod:`looptool.loop.judge.parse`), and the reconciliation of the votes into one
decision: orders per model, then models by majority, ties by ``tie_break``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from looptool.core.types import canonical_json, content_hash
from looptool.engines.base import (
    JUDGE_TASK,
    ChatRequest,
    ChoiceRequest,
    Engine,
    Failed,
    SamplingParams,
    reads_payload,
)
from looptool.engines.failures import failure_note
from looptool.loop.judge.parse import VERDICT_OPTIONS, parse_judgement, sections, strip_think
from looptool.loop.judge.prompt import judge_prompt
from looptool.loop.judge.types import ORDERS, Decision, Item, Vote
from looptool.params.loop import JudgeParams
from looptool.prompts import load_prompt

# keep_label tie-break: the candidate verdict that changes the least wins.
KEEP_LABEL_PREFERENCE = ("PRED_WRONG", "BOTH_CORRECT", "BOTH_WRONG", "LABEL_WRONG")


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


def judge_payload(item: Item, order: str, expect: str) -> dict:
    """What a programmatic judge (the dry-run oracle) reads instead of the prompt text:
    the sample id, the two sides and the order they are shown in; ``expect`` is
    ``analysis`` (no verdict line wanted), ``verdict`` (parse mode) or ``choice``."""
    pred = item.prediction
    return {
        "sample_id": item.sample_id,
        "order": order,
        "label": item.sample.label.to_json(),
        "prediction": pred.to_json() if pred is not None else None,
        "expect": expect,
    }


def run_llm_tier(
    engine: Engine, work: list[tuple[Item, str]], date: str, params: JudgeParams
) -> list[Vote]:
    """One vote per (item, order) from one judge model, in ``work`` order."""
    template = {"enable_thinking": params.thinking}
    programmatic = reads_payload(engine)

    def routed(k: int, expect: str) -> dict:  # task + payload for a programmatic judge only
        if not programmatic:
            return {}
        item, order = work[k]
        return {"task": JUDGE_TASK, "payload": judge_payload(item, order, expect)}

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
                **routed(k, "verdict"),
            )
            for k, (it, o) in enumerate(work)
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
                **routed(k, "analysis"),
            )
            for k, p in enumerate(prompts)
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
            messages=choice_msgs[k],
            options=VERDICT_OPTIONS,
            chat_template_kwargs=template,
            **routed(k, "choice"),
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
