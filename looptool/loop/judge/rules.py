"""Tiers 0 and 1 of the judge cascade: plain functions ``Item -> Decision | None`` (None:
the next tier decides). Tier 1 checks both sides against the schema rules and runs first;
tier 0 accepts a prediction equal to the label after normalization. The order and the
outcomes are described in :mod:`looptool.loop.judge.run`.
"""

from __future__ import annotations

from looptool.core.match import match_normalized
from looptool.core.rules import check_calls
from looptool.loop.judge.types import Decision, Item
from looptool.params.loop import JudgeParams


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
