"""A recorded conversation -> the plan and acts the seed verification tiers read.

Synthesized dialogues carry the plan they were simulated from; an imported one gets the
plan its assistant steps imply, so the same rule and intent tiers check it:

- every user message opens a turn, except the user's reply to a clarifying question
  (an assistant text that asks for information before any call of the turn), which
  continues it;
- consecutive assistant call messages of a turn are its steps (step 2 may use step 1's
  results): one step of one call = single, one step of 2+ calls = parallel, 2+ steps =
  multi_step; a turn that asked first is clarify;
- an assistant text in a turn with calls is an ``answer``; in a turn without calls it is
  ``clarify`` (it asks for information) or ``irrelevant`` (it declines), as
  :func:`looptool.core.match.no_call_kind` reads a reply; the act becomes the kind the
  sample's label carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from looptool.core.match import no_call_kind
from looptool.core.types import Message, canonical_json, content_hash
from looptool.seed.importers.base import ImportedDialogue, RecordError
from looptool.seed.plan import Plan
from looptool.seed.values import appears_in, scalar_leaves


def plan_acts(messages: list[Message]) -> tuple[Plan, list[dict | None]]:
    """(plan, per-message acts) of a conversation; RecordError if it has no shape."""
    if not messages:
        raise RecordError("no messages")
    if messages[0].role != "user":
        raise RecordError(f"message 0 is from the {messages[0].role}, expected the user")
    turns: list[dict[str, Any]] = []
    acts: list[dict | None] = []
    for m in messages:
        turn = turns[-1] if turns else None
        if m.role == "user":
            if turn is not None and turn["asked"] and not turn["steps"]:
                turn["provided"].append(m.content)
            else:
                turns.append({"request": m.content, "steps": [], "asked": False, "provided": []})
            acts.append(None)
        elif m.role == "assistant":
            assert turn is not None  # messages[0] is a user message
            t = len(turns) - 1
            if m.tool_calls:
                turn["steps"].append([c.to_json() for c in m.tool_calls])
                acts.append(
                    {"turn": t, "step": len(turn["steps"]) - 1, "expect": "call", "act": "call"}
                )
            elif not turn["steps"] and no_call_kind(m.content) == "clarify":
                turn["asked"] = True
                acts.append({"turn": t, "step": None, "expect": "clarify", "act": "clarify"})
            else:
                acts.append({"turn": t, "step": None, "expect": None, "act": None})
        else:
            acts.append(None)
    for act in acts:  # texts that ask nothing: answer after calls, else a refusal
        if act is not None and act["act"] is None:
            kind = "answer" if turns[act["turn"]]["steps"] else "irrelevant"
            act["act"] = act["expect"] = kind
    plan = Plan.model_validate({"turns": [_turn(t) for t in turns]})
    return plan, acts


def _turn(t: dict[str, Any]) -> dict[str, Any]:
    steps = t["steps"]
    if t["asked"]:
        kind = "clarify"
    elif not steps:
        kind = "irrelevant"
    elif len(steps) > 1:
        kind = "multi_step"
    else:
        kind = "parallel" if len(steps[0]) > 1 else "single"
    omit = None
    if kind == "clarify" and steps and t["provided"]:
        # the argument the user supplied only after being asked
        said, added = t["request"], " ".join(t["provided"])
        for key, value in steps[0][0]["arguments"].items():
            leaves = scalar_leaves(value)
            if leaves and not all(appears_in(v, said) for v in leaves):
                if all(appears_in(v, added) for v in leaves):
                    omit = key
                    break
    return {"kind": kind, "request": t["request"], "omit": omit, "steps": steps}


def dialogue_row(d: ImportedDialogue, path: str, fmt: str, index: int) -> dict:
    """A DIALOGUES row (looptool.core.tables) for one imported conversation."""
    plan, acts = plan_acts(d.messages)
    tools = [t.to_json() for t in d.tools]
    provenance = [
        {
            "name": t["name"],
            "api_id": content_hash({"spec": t, "returns": None}),
            "source": "import",
            "context_path": None,
            "constraint_path": None,
            "origin_ref": d.ref,
            "returns": None,
        }
        for t in tools
    ]
    return {
        # file:line, plus #k when records share a line (a one-line JSON list)
        "dialogue_id": f"import:{path}:{d.place}",
        "index": index,
        "domain": f"import:{Path(path).stem}",
        "tools": canonical_json(tools),
        "provenance": canonical_json(provenance),
        "turn_kinds": canonical_json([t.kind for t in plan.turns]),
        "plan": canonical_json(plan.model_dump(mode="json")),
        "messages": canonical_json([m.to_json() for m in d.messages]),
        "acts": canonical_json(acts),
        "n_messages": len(d.messages),
        "n_calls": sum(len(m.tool_calls) for m in d.messages),
        "agents": canonical_json({"import": {"file": path, "format": fmt, "line": d.line}}),
        "verification": None,
    }
