"""The GRPO reward: 1.0 when strict ToolMatch says the completion equals the label, else 0.0.

Calls written inside ``<think>`` are ignored (the codec strips think blocks before
looking for calls); a completion that does not parse scores 0. A no-call label is
matched only by a completion without a call that does what the label's kind says
(clarify: asks for information; irrelevant: declines or asks nothing). The one matcher is :func:`looptool.core.match.match_strict`;
this module only adapts it to TRL, and adds the ``graded`` ablation (partial credit,
ToolRL-style) on top of it: a completion scores 1.0 only where strict ToolMatch does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from looptool.core.codec import ParsedOutput, parse_completion
from looptool.core.match import (
    KIND_GROUPS,
    MatchResult,
    match_strict,
    no_call_kind,
    values_equal,
)
from looptool.core.tables import label_from_json
from looptool.core.types import Label, ToolCall


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


def _jaccard(a: Counter, b: Counter) -> float:
    union = sum((a | b).values())
    return sum((a & b).values()) / union if union else 1.0


def _call_credit(pred: list[ToolCall], gold: list[ToolCall]) -> float:
    """Partial credit in [0, 1) for calls that are not an exact match: function names
    (multiset Jaccard), argument names and argument values of same-name call pairs."""
    names = _jaccard(Counter(c.name for c in pred), Counter(c.name for c in gold))
    keys = values = 0.0
    left = list(pred)
    for g in gold:
        p = next((c for c in left if c.name == g.name), None)
        if p is None:
            continue
        left.remove(p)
        keys += _jaccard(Counter(p.arguments.keys()), Counter(g.arguments.keys()))
        shared = [k for k in g.arguments if k in p.arguments]
        same = sum(values_equal(p.arguments[k], g.arguments[k]) for k in shared)
        values += same / len(g.arguments) if g.arguments else 1.0
    n = max(len(gold), 1)
    # Weights: right kind of answer 0.2 (given), names 0.3, argument names 0.2, values 0.2;
    # capped below 1.0 so only an exact match earns the full reward.
    return min(0.2 + 0.3 * names + 0.2 * keys / n + 0.2 * values / n, 0.9)


def graded_reward(parsed: ParsedOutput, gold: Label, result: MatchResult) -> float:
    """ToolRL-style partial credit (``train.reward: graded``): 1.0 on a strict match, 0 on a
    parse failure or the wrong answer kind (call vs no-call), else credit for the answer
    kind, function names, argument names and values (see :func:`_call_credit`)."""
    if result.ok:
        return 1.0
    if not parsed.ok or bool(parsed.calls) != bool(gold.calls):
        return 0.0
    if not gold.calls:  # a no-call answer of the wrong kind, or empty
        return 0.2 if parsed.text.strip() else 0.0
    return _call_credit(parsed.calls, gold.calls)


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


@dataclass(frozen=True)
class Scored:
    """One scored completion, as the batch metrics need it."""

    result: MatchResult
    reward: float
    group: str  # call | clarify | irrelevant (the label's kind group)
    has_call: bool  # parses and holds at least one call


def batch_metrics(scored: Sequence[Scored]) -> dict[str, float]:
    """The per-batch trainer log values of :class:`ToolMatchReward` over ``scored``."""
    if not scored:
        return {}
    n = len(scored)
    out = {
        "toolmatch/match_rate": sum(s.result.ok for s in scored) / n,
        "toolmatch/parse_failure_rate": sum(s.result.reason == "parse_error" for s in scored) / n,
        "toolmatch/tool_call_rate": sum(s.has_call for s in scored) / n,
    }
    for group in KIND_GROUPS:
        mine = [s.reward for s in scored if s.group == group]
        if mine:
            out[f"toolmatch/reward_{group}"] = sum(mine) / len(mine)
    return out


def label_group(label: Label) -> str:
    """call | clarify | irrelevant: the kind group a label's reward is reported under."""
    return "call" if label.calls else (label.kind or no_call_kind(label.text))


class ToolMatchReward:
    """TRL reward function: ``reward(completions=..., label=[label JSON per completion])``.

    TRL passes every extra dataset column by name, repeated per generation, and a
    ``log_metric`` callback. Per batch it logs (trainer log keys): ``toolmatch/match_rate``,
    ``toolmatch/parse_failure_rate``, ``toolmatch/tool_call_rate`` (completions holding a
    parseable call) and ``toolmatch/reward_<group>`` per kind group present (call, clarify,
    irrelevant); counts accumulate in :attr:`stats` for the run's metrics file.
    ``mode="graded"`` returns :func:`graded_reward` instead of 0/1.

    With ``defer`` on (DAPO dynamic sampling, loop/dynamic_sampling.py) a batch is only
    held in :attr:`pending` until the trainer knows which of its completions it trains on:
    :meth:`commit` then counts those in :attr:`stats` and the rest in :attr:`discarded`,
    and returns the log values of the trained ones.
    """

    __name__ = "toolmatch"  # TRL names the reward's log keys after the function

    def __init__(self, mode: str = "binary") -> None:
        if mode not in ("binary", "graded"):
            raise ValueError(f"reward mode {mode!r}: expected binary or graded")
        self.mode = mode
        self.stats = RewardStats()
        self.discarded = RewardStats()  # scored, then dropped by dynamic sampling
        self.defer = False
        self.pending: list[list[Scored]] = []  # with defer: one list per scored batch

    def __call__(
        self,
        completions: Sequence[str | list[dict]],
        label: Sequence[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: object,
    ) -> list[float]:
        if len(label) != len(completions):
            raise ValueError(f"reward: {len(completions)} completions but {len(label)} labels")
        golds = [_label(lab) for lab in label]
        parsed = [parse_completion(completion_text(c)) for c in completions]
        results = [match_strict(p, g) for p, g in zip(parsed, golds, strict=True)]
        if self.mode == "graded":
            rewards = [
                graded_reward(p, g, r) for p, g, r in zip(parsed, golds, results, strict=True)
            ]
        else:
            rewards = [1.0 if r.ok else 0.0 for r in results]
        scored = [
            Scored(r, rw, label_group(g), p.ok and bool(p.calls))
            for r, rw, g, p in zip(results, rewards, golds, parsed, strict=True)
        ]
        if self.defer:
            self.pending.append(scored)
            return rewards
        self.stats.add(results)
        if log_metric is not None:
            for name, value in batch_metrics(scored).items():
                log_metric(name, value)
        return rewards

    def commit(self, trained: Sequence[tuple[int, int]]) -> dict[str, float]:
        """End a deferred step: ``trained`` = (pending batch, row) of every completion the
        step trains on. Those go to :attr:`stats`, every other pending one to
        :attr:`discarded`; returns :func:`batch_metrics` of the trained completions."""
        keep = set(trained)
        rows = [self.pending[b][r] for b, r in trained]
        dropped = [
            s for b, batch in enumerate(self.pending) for r, s in enumerate(batch)
            if (b, r) not in keep
        ]  # fmt: skip
        self.stats.add([s.result for s in rows])
        self.discarded.add([s.result for s in dropped])
        self.pending.clear()
        return batch_metrics(rows)
