"""ToolMatch: the one decision of "is this tool call right?" (DESIGN §4).

``strict`` mode (training reward, probing, verification) lives here; ``bfcl`` mode
(possible-answer lists) lives in :mod:`looptool.core.match_bfcl` and shares the
result type. Both return a :class:`MatchResult` with a machine-readable reason.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from looptool.core.codec import ParsedOutput, parse_completion
from looptool.core.reply import reply_kind
from looptool.core.types import Label, ToolCall, ToolSpec


@dataclass(frozen=True)
class MatchResult:
    ok: bool
    reason: str  # "match" or a rule name, e.g. "call_count", "value_mismatch", "parse_error"
    detail: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


def values_equal(a: Any, b: Any) -> bool:
    """JSON-type-aware equality: 1 == 1.0, but "1" != 1, true != 1; lists ordered."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return a is None and b is None


def call_diff(pred: ToolCall, gold: ToolCall) -> dict[str, Any] | None:
    """None when the calls are equal, else the first difference as a reason dict."""
    if pred.name != gold.name:
        return {"rule": "name_mismatch", "expected": gold.name, "got": pred.name}
    missing = sorted(gold.arguments.keys() - pred.arguments.keys())
    if missing:
        return {"rule": "missing_arg", "name": gold.name, "params": missing}
    extra = sorted(pred.arguments.keys() - gold.arguments.keys())
    if extra:
        return {"rule": "extra_arg", "name": gold.name, "params": extra}
    for key in sorted(gold.arguments):
        if not values_equal(pred.arguments[key], gold.arguments[key]):
            return {
                "rule": "value_mismatch",
                "name": gold.name,
                "param": key,
                "expected": gold.arguments[key],
                "got": pred.arguments[key],
            }
    return None


def max_bipartite_matching(adj: list[list[int]], n_right: int) -> list[int]:
    """Kuhn's augmenting paths; returns match_of_left (-1 when unmatched)."""
    match_right = [-1] * n_right

    def augment(u: int, seen: list[bool]) -> bool:
        for v in adj[u]:
            if not seen[v]:
                seen[v] = True
                if match_right[v] < 0 or augment(match_right[v], seen):
                    match_right[v] = u
                    return True
        return False

    for u in range(len(adj)):
        augment(u, [False] * n_right)
    match_left = [-1] * len(adj)
    for v, u in enumerate(match_right):
        if u >= 0:
            match_left[u] = v
    return match_left


def match_calls(pred: list[ToolCall], gold: list[ToolCall]) -> MatchResult:
    """Order-free one-to-one equality of two call lists (duplicates counted)."""
    if len(pred) != len(gold):
        return MatchResult(False, "call_count", {"expected": len(gold), "got": len(pred)})
    adj = [[j for j, p in enumerate(pred) if call_diff(p, g) is None] for g in gold]
    match = max_bipartite_matching(adj, len(pred))
    unmatched = [i for i, m in enumerate(match) if m < 0]
    if not unmatched:
        return MatchResult(True, "match")
    i = unmatched[0]
    g = gold[i]
    # Report the difference against the closest candidate: same name first.
    used = set(match)
    candidates = [j for j in range(len(pred)) if j not in used] or list(range(len(pred)))
    same = [j for j in candidates if pred[j].name == g.name]
    j = (same or candidates)[0]
    diff = call_diff(pred[j], g) or {"rule": "duplicate_call", "name": g.name}
    return MatchResult(False, diff["rule"], {"label_call": i, "pred_call": j, **diff})


# Kinds of a sample's label (the `kind` column): three call kinds and two no-call kinds.
CALL_KINDS: tuple[str, ...] = ("single", "parallel", "multi_step")
NO_CALL_KINDS: tuple[str, ...] = ("clarify", "irrelevant")
KIND_GROUPS: tuple[str, ...] = ("call", *NO_CALL_KINDS)
# kind -> kind group for the call kinds (the no-call kinds are their own group); also the
# mapping for Polars ``pl.col("kind").replace(KIND_GROUP_OF)``.
KIND_GROUP_OF: dict[str, str] = dict.fromkeys(CALL_KINDS, "call")


def no_call_kind(text: str | None) -> str:
    """What a no-call reply does: ``clarify`` when it asks the user for information,
    ``irrelevant`` when it declines or asks nothing (:func:`looptool.core.reply.reply_kind`).

    This reads predictions (and texts that came without a kind). A label's kind is the
    one its sample carries (:attr:`Label.kind`), never re-read from its wording; a text
    answer matches a no-call label only when it does what the label does, so a policy
    cannot collect the reward of every no-call sample with one canned reply (DESIGN §9).
    """
    return reply_kind(text)


def kind_group(kind: str) -> str:
    """``call`` for the call kinds, else the no-call kind itself (legacy ``no_call`` kept)."""
    return KIND_GROUP_OF.get(kind, kind)


def match_strict(pred: ParsedOutput | Label | str, label: Label) -> MatchResult:
    """Strict ToolMatch of a prediction (text, parsed output or label) against a label.

    A no-call label matches only a prediction with no call whose text is non-empty and
    does what the label's ``kind`` says (:func:`no_call_kind` of the prediction: a
    request for information for a clarify label, a refusal or a reply that asks nothing
    for an irrelevant one); a parse failure scores 0 with reason ``parse_error``; never
    raises.
    """
    if isinstance(pred, str):
        pred = parse_completion(pred)
    if isinstance(pred, ParsedOutput) and pred.error is not None:
        return MatchResult(
            False, "parse_error", {"kind": pred.error.kind, "message": pred.error.message}
        )
    calls = pred.calls
    if label.is_no_call:
        if calls:
            return MatchResult(False, "unexpected_call", {"got": len(calls)})
        text = (pred.text or "").strip()
        if not text:
            return MatchResult(False, "empty_answer", {})
        want = label.kind or no_call_kind(label.text)
        got = pred.kind if isinstance(pred, Label) and pred.kind else no_call_kind(text)
        if want != got:
            return MatchResult(False, "answer_kind", {"expected": want, "got": got})
        return MatchResult(True, "match")
    if not calls:
        return MatchResult(False, "missing_calls", {"expected": len(label.calls)})
    return match_calls(calls, label.calls)


def _normalize_value(value: Any) -> Any:
    """Surface normalization for tier-0 equivalence: case/space-insensitive strings,
    integral floats as ints; lists stay ordered, objects by key."""
    if isinstance(value, str):
        return " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normalize_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalize_value(v) for k, v in value.items()}
    return value


def normalize_call(call: ToolCall, spec: ToolSpec | None = None) -> ToolCall:
    """``call`` with normalized values and, given its spec, optional arguments that merely
    restate the schema default removed (so omitting them is equivalent)."""
    props = spec.properties if spec is not None else {}
    required = set(spec.required) if spec is not None else set()
    args = {}
    for key, value in call.arguments.items():
        norm = _normalize_value(value)
        schema = props.get(key)
        if key not in required and isinstance(schema, dict) and "default" in schema:
            if values_equal(norm, _normalize_value(schema["default"])):
                continue
        args[key] = norm
    return ToolCall(name=call.name, arguments=args)


def match_normalized(
    pred: list[ToolCall], gold: list[ToolCall], tools: list[ToolSpec] | None = None
) -> MatchResult:
    """Strict ToolMatch after :func:`normalize_call` on both sides (JGLV tier 0)."""
    by_name = {t.name: t for t in tools or []}
    return match_calls(
        [normalize_call(c, by_name.get(c.name)) for c in pred],
        [normalize_call(c, by_name.get(c.name)) for c in gold],
    )
