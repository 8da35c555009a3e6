"""The seed roles' task names and the pieces their prompts are built from.

Roles: the four dialogue agents (planner, user, assistant, tool) and the intent judge of
verification. The simulation (:mod:`looptool.seed.agents`), verification
(:mod:`looptool.seed.verify`) and the template backend (:mod:`looptool.seed.templates`)
all read them here: a task name ties an agent's request to its template implementation,
and the user's goal / the judge's step rendering fill the LLM prompts.
"""

from __future__ import annotations

import json

from looptool.core.types import Message, canonical_json
from looptool.seed.plan import PlanCall, PlanTurn
from looptool.seed.values import words

AGENTS = ("planner", "user", "assistant", "tool")
PLANNER_TASK, USER_TASK = "seed.planner", "seed.user"
ASSISTANT_TASK, TOOL_TASK = "seed.assistant", "seed.tool"
ROLE_TASKS = {
    "planner": PLANNER_TASK,
    "user": USER_TASK,
    "assistant": ASSISTANT_TASK,
    "tool": TOOL_TASK,
}
VERIFY_CHOICE_TASK = "seed.verify_intent"
VERIFY_REASON_TASK = "seed.verify_reason"
OPTIONS = ("PASS", "FAIL")


# --- the user's prompt -------------------------------------------------------------------


def transcript(messages: list[Message]) -> str:
    lines = []
    for m in messages:
        if m.tool_calls:
            lines.append(f"assistant: calls {canonical_json([c.to_json() for c in m.tool_calls])}")
        elif m.role == "tool":
            lines.append(f"tool {m.name}: {m.content}")
        else:
            lines.append(f"{m.role}: {m.content}")
    return "\n".join(lines) or "(empty)"


def user_known(turn: PlanTurn) -> list[tuple[PlanCall, dict]]:
    """Per call of a turn, the arguments the user knows and states: every value except
    the one a clarify turn leaves out and those a later call ``uses`` from an earlier
    call's result (a user cannot know them; stating them collapses the chain)."""
    out = []
    for s, step in enumerate(turn.steps):
        for i, c in enumerate(step):
            skip = set(c.uses) | ({turn.omit} if turn.omit and s == i == 0 else set())
            out.append((c, {k: v for k, v in c.arguments.items() if k not in skip}))
    return out


def user_goal(turn: PlanTurn, mode: str) -> tuple[str, str]:
    if turn.kind == "irrelevant":
        return turn.request, "Ask exactly for this."
    if mode == "provide":
        value = turn.omitted_value()
        return (
            f"answer the assistant's question with the missing value: {turn.omit} = {json.dumps(value)}",
            "Give only that value, naturally.",
        )
    want = "; ".join(f"{c.name} with {canonical_json(args)}" for c, args in user_known(turn))
    details = f"Mention each of these values literally, as written: {want}."
    if turn.omit:
        details += f" Do NOT mention {turn.omit}."
    # the value itself is never shown: a model tends to copy what it is told not to say
    flows = [f"the {words(p)}" for step in turn.steps for c in step for p in c.uses]
    if flows:
        details += (
            f" Do NOT state {', '.join(flows)}: you do not know it, it comes from the result"
            " of the first request; ask the assistant to use that result."
        )
    elif turn.kind == "multi_step":
        details += " Say that the later request comes after the first one."
    return turn.request or "get help with the following", details


# --- the intent judge's prompt -------------------------------------------------------------


def planned_for(turn: dict, step: int | None) -> list[dict]:
    steps = turn.get("steps") or []
    return steps[step] if step is not None and step < len(steps) else []


def render_step(p: dict) -> tuple[str, str, str]:
    turn = p["turn"]
    if p["act"] in ("clarify", "irrelevant") or turn["kind"] == "irrelevant":
        intent = {
            "irrelevant": "decline: no tool fits the request",
            "clarify": f"ask the user for the missing value {turn.get('omit')!r}",
        }.get(turn["kind"], "")
        intent = intent or f"{turn['kind']} turn"
    else:
        planned = planned_for(turn, p.get("step"))
        intent = "call " + canonical_json(planned) if planned else f"{turn['kind']} turn"
    conv = "\n".join(
        f"{m['role']}{(' ' + m['name']) if m.get('name') else ''}: "
        + (canonical_json(m["tool_calls"]) if m.get("tool_calls") else m.get("content", ""))
        for m in p["context"]
    )
    msg = p["message"]
    step = (
        ("calls " + canonical_json(msg["tool_calls"]))
        if msg.get("tool_calls")
        else msg.get("content", "")
    )
    return intent, conv, step
