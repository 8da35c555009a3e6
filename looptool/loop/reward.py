"""The GRPO reward: 1.0 when strict ToolMatch says the completion equals the label, else 0.0.

Calls written inside ``<think>`` are ignored (the codec strips think blocks before
looking for calls); a completion that does not parse scores 0. A no-call label is
matched only by a completion without a call. The one matcher is
:func:`looptool.core.match.match_strict`; this module only adapts it to TRL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from looptool.core.match import MatchResult, match_strict
from looptool.core.tables import label_from_json
from looptool.core.types import Label


@lru_cache(maxsize=65536)
def _label(label_json: str) -> Label:
    # Every prompt is scored num_generations times per step: parse its label once.
    return label_from_json(label_json)


def completion_text(completion: str | list[dict]) -> str:
    """The assistant text of a TRL completion (plain string, or a one-message conversation)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")


def score(completion: str | list[dict], label: Label | str) -> MatchResult:
    """Strict ToolMatch of one completion against its label (a Label or its stored JSON)."""
    gold = _label(label) if isinstance(label, str) else label
    return match_strict(completion_text(completion), gold)


@dataclass
class RewardStats:
    """Running counts over every scored completion (match and parse-failure rates)."""

    n: int = 0
    matched: int = 0
    parse_failures: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, results: Sequence[MatchResult]) -> None:
        self.n += len(results)
        self.matched += sum(r.ok for r in results)
        self.parse_failures += sum(r.reason == "parse_error" for r in results)
        self.reasons.update(r.reason for r in results)

    @property
    def match_rate(self) -> float:
        return self.matched / self.n if self.n else 0.0

    @property
    def parse_failure_rate(self) -> float:
        return self.parse_failures / self.n if self.n else 0.0

    def to_json(self) -> dict:
        return {
            "completions_scored": self.n,
            "match_rate": self.match_rate,
            "parse_failure_rate": self.parse_failure_rate,
            "reasons": dict(sorted(self.reasons.items())),
        }


class ToolMatchReward:
    """TRL reward function: ``reward(completions=..., label=[label JSON per completion])``.

    TRL passes every extra dataset column by name, repeated per generation, and a
    ``log_metric`` callback; the batch match and parse-failure rates go there (they show
    up in the trainer logs as ``toolmatch/match_rate`` and ``toolmatch/parse_failure_rate``)
    and accumulate in :attr:`stats` for the run's metrics file.
    """

    __name__ = "toolmatch"  # TRL names the reward's log keys after the function

    def __init__(self) -> None:
        self.stats = RewardStats()

    def __call__(
        self,
        completions: Sequence[str | list[dict]],
        label: Sequence[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: object,
    ) -> list[float]:
        if len(label) != len(completions):
            raise ValueError(f"reward: {len(completions)} completions but {len(label)} labels")
        results = [score(c, lab) for c, lab in zip(completions, label, strict=True)]
        self.stats.add(results)
        if log_metric is not None and results:
            n = len(results)
            log_metric("toolmatch/match_rate", sum(r.ok for r in results) / n)
            log_metric(
                "toolmatch/parse_failure_rate", sum(r.reason == "parse_error" for r in results) / n
            )
        return [1.0 if r.ok else 0.0 for r in results]
