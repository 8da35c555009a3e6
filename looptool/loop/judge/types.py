"""What the judge cascade passes around: a mismatch to judge (:class:`Item`), a verdict
with its reasons (:class:`Decision`), one judge model's reading of one response order
(:class:`Vote`) and the verdicts table; and how a verdict maps to an outcome (Alg. 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from looptool.core.types import Label, Sample

OUTCOME_OF = {"PRED_WRONG": "MR", "LABEL_WRONG": "LR", "BOTH_WRONG": "DROPPED"}
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
