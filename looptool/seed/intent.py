"""The template intent check: the second verification tier without a model.

:func:`intent_problems` reads the payload of one assistant step (conversation before it,
the message, the plan turn and step) and lists what does not fit the user's intent; the
template backend answers the verify tasks with it (:mod:`looptool.seed.templates`). What
it checks is described in :mod:`looptool.seed.verify`.
"""

from __future__ import annotations

from typing import Any

from looptool.core.types import canonical_json
from looptool.seed.roles import planned_for
from looptool.seed.values import appears_in, scalar_leaves


def _context_text(context: list[dict]) -> str:
    return "\n".join(m.get("content", "") for m in context if m.get("role") in ("user", "tool"))


def intent_problems(p: dict[str, Any]) -> list[str]:
    """The template intent check of one step (see module doc); empty list = PASS."""
    act, turn = p["act"], p["turn"]
    text = _context_text(p["context"])
    if act == "irrelevant":
        if turn["kind"] != "irrelevant":
            return ["the assistant declined although the tools fit the request"]
        return []
    if act == "clarify":
        if turn["kind"] != "clarify":
            return ["the assistant asked a question the plan did not call for"]
        steps = turn.get("steps") or [[]]  # an imported clarify turn may end unanswered
        omitted = steps[0][0]["arguments"].get(turn.get("omit")) if steps[0] else None
        if omitted is not None and all(appears_in(v, text) for v in scalar_leaves(omitted)):
            return [f"the assistant asked for {turn['omit']} although the user already gave it"]
        return []
    if act != "call":
        return []
    calls = p["message"].get("tool_calls", [])
    if turn["kind"] == "irrelevant":
        return [
            f"the request is out of scope, yet the assistant called {[c['name'] for c in calls]}"
        ]
    planned = list(planned_for(turn, p.get("step")))
    if not planned:
        return ["the assistant made calls where the plan has none"]
    problems = []
    if len(calls) < len(planned):
        problems.append(f"made {len(calls)} of the {len(planned)} planned calls")
    for c in calls:
        same = [q for q in planned if q["name"] == c["name"]]
        if not same:
            problems.append(
                f"called {c['name']} but the plan intended {sorted({q['name'] for q in planned})}"
            )
            continue
        best = max(
            same, key=lambda q: sum(q["arguments"].get(k) == v for k, v in c["arguments"].items())
        )
        planned.remove(best)
        for k, v in c["arguments"].items():
            missing = [x for x in scalar_leaves(v) if not appears_in(x, text)]
            if missing:
                problems.append(
                    f"{c['name']}.{k}={canonical_json(v)} does not appear in the conversation"
                )
        for k, v in c["arguments"].items():
            want = best["arguments"].get(k)
            if (
                k in best["arguments"]
                and canonical_json(want) != canonical_json(v)
                and all(appears_in(x, text) for x in scalar_leaves(want))
            ):
                problems.append(
                    f"{c['name']}.{k}={canonical_json(v)} but the user asked for {canonical_json(want)}"
                )
        dropped = sorted(set(best["arguments"]) - set(c["arguments"]))
        if dropped:
            problems.append(f"{c['name']} leaves out {dropped} that the user gave")
    return problems
