"""The held-out format check and the collapse guard built on it.

The warm start's check greedy-decodes ``warmstart.heldout_check`` held-out prompts (a
seeded subset) and records how often a call-labelled prompt gets a parseable
``<tool_call>`` answer. After every train@j the same prompts are decoded with the new
checkpoint: when that tool-call rate falls below ``train.guard.min_ratio`` of the warm
start's, the policy is collapsing (DESIGN §9): into text answers, or into output that
no longer parses (:func:`collapse_kind` says which), and the guard warns loudly or fails
the stage.
"""

from __future__ import annotations

import os
from typing import Any

from looptool.engines import factory
from looptool.eval.policy import FailureBudget, policy_spec
from looptool.loop.train_rows import read_samples
from looptool.loop.warmstart import format_check
from looptool.params import Params
from looptool.params.train import GuardParams


def heldout_check(params: Params, model_dir: str | os.PathLike, heldout: str | os.PathLike) -> dict:
    """:func:`format_check` of the checkpoint at ``model_dir`` on the warm start's held-out
    check prompts (same count and seed every time, so rates compare across iterations).

    Requests the engine failed are left out of the rates (and listed); more than
    ``eval.max_engine_failure_share`` of them raise
    :class:`~looptool.eval.policy.EngineFailures`: with every request failed no
    call-labelled prompt is left, and the guard would pass a policy it never saw."""
    ws = params.warmstart
    spec = policy_spec(params.engines.policy, model_dir)
    if spec.backend not in ("hf", "vllm", "oracle"):
        return {"skipped": f"policy backend {spec.backend} serves no checkpoint"}
    engine = factory.open_engine(
        spec, "policy", use_cache=params.engines.use_cache, cache_dir=params.project.cache_dir
    )
    held = read_samples(heldout, ws.heldout_check, ws.seed)
    check = format_check(
        engine,
        held.samples,
        date=params.project.date,
        enable_thinking=ws.enable_thinking,
        max_tokens=ws.heldout_check_max_tokens,
    )
    budget = FailureBudget(
        "held-out check", len(held.samples), engine,
        max_share=params.eval.max_engine_failure_share,
    )  # fmt: skip
    budget.fail_all([f"{f['item']}: {f['reason']}" for f in check.get("engine_failed") or []])
    return check


def guard_verdict(check: dict, baseline: dict | None, guard: GuardParams) -> dict[str, Any]:
    """Compare this iteration's held-out tool-call rate with the warm start's.

    ``ok`` is False when the rate is below ``min_ratio`` x the warm start's; ``skipped``
    says why no comparison was possible (no baseline, no call-labelled prompts).
    """
    rate = check.get("tool_call_rate")
    base = (baseline or {}).get("tool_call_rate")
    out: dict[str, Any] = {
        "tool_call_rate": rate,
        "warmstart_tool_call_rate": base,
        "text_answer_rate": check.get("text_answer_rate"),
        "unparsed_rate": check.get("unparsed_rate"),
        # held-out check requests the engine failed: left out of the rates
        "engine_failed": len(check.get("engine_failed") or []),
        "min_ratio": guard.min_ratio,
        "action": guard.action,
    }
    if rate is None or base is None:
        why = "no warm-start held-out check" if base is None else "no call-labelled prompt"
        return {**out, "ok": True, "skipped": why}
    ratio = rate / base if base > 0 else None
    ok = base == 0 or rate >= guard.min_ratio * base
    return {**out, "ratio": ratio, "ok": ok}


def collapse_kind(verdict: dict[str, Any]) -> str:
    """What a failed guard's lost tool calls became, in words for the warning."""
    text, bad = verdict.get("text_answer_rate"), verdict.get("unparsed_rate")
    if text is None or bad is None:  # a check recorded before these rates existed
        return "the policy is losing its tool calls"
    split = f"call-labelled prompts answered in text {text:.2f}, unparseable output {bad:.2f}"
    if bad > text:
        return (
            f"the policy writes output that does not parse ({split}): broken JSON or calls "
            "repeated up to the token cap, not text answers"
        )
    return f"the policy is turning into a text answerer ({split})"
