"""The generator's answer read into a Sample: one JSON object (fenced or bare, think
blocks removed) with ``tools``, ``context`` and ``label``; a problem raises a ValueError
that names it.
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from looptool.core.match import NO_CALL_KINDS
from looptool.core.types import (
    Label,
    Message,
    Sample,
    ToolCall,
    ToolSpec,
    ToolSpecError,
    canonical_json,
)
from looptool.loop.judge.parse import strip_think

_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_object(text: str) -> dict:
    body = strip_think(text).strip()
    fenced = _FENCE_RE.findall(body)
    if fenced:
        body = fenced[0].strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the output")
    try:
        obj = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError("output is not a JSON object")
    return obj


def _call(raw: object, where: str) -> ToolCall:
    if (
        isinstance(raw, dict)
        and raw.get("type") == "function"
        and isinstance(raw.get("function"), dict)
    ):
        raw = raw["function"]
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError(f"{where}: a call needs a 'name'")
    args = raw.get("arguments", {})
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    if not isinstance(args, dict):
        raise ValueError(f"{where}: 'arguments' must be an object")
    return ToolCall(name=raw["name"], arguments=args)


def parse_child(text: str, seed_tools: list[ToolSpec]) -> Sample:
    """The generator's JSON answer as a Sample; raises ValueError naming the problem."""
    obj = _json_object(text)
    by_name = {t.name: t for t in seed_tools}
    tools: list[ToolSpec] = []
    raw_tools = obj.get("tools")
    if raw_tools is None:
        tools = list(seed_tools)
    elif not isinstance(raw_tools, list) or not raw_tools:
        raise ValueError("'tools' must be a non-empty list")
    else:
        for i, t in enumerate(raw_tools):
            if isinstance(t, str):
                if t not in by_name:
                    raise ValueError(f"tools[{i}]: {t!r} is not a function of the seed")
                tools.append(by_name[t])
            else:
                try:
                    tools.append(ToolSpec.from_any(t, f"tools[{i}]"))
                except ToolSpecError as exc:
                    raise ValueError(str(exc)) from None
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ValueError("duplicate function names in 'tools'")
    ctx = obj.get("context")
    if not isinstance(ctx, list) or not ctx:
        raise ValueError("'context' must be a non-empty list of messages")
    messages = []
    for i, m in enumerate(ctx):
        if not isinstance(m, dict):
            raise ValueError(f"context[{i}]: not an object")
        calls = [
            _call(c, f"context[{i}].tool_calls[{k}]")
            for k, c in enumerate(m.get("tool_calls") or [])
        ]
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            content = canonical_json(content)
        try:
            messages.append(
                Message(
                    role=m.get("role"), content=content or "", tool_calls=calls, name=m.get("name")
                )
            )
        except ValidationError as exc:
            raise ValueError(f"context[{i}]: {exc.errors()[0]['msg']}") from None
    lab = obj.get("label")
    if not isinstance(lab, dict):
        raise ValueError("'label' must be an object with 'calls' (or 'text')")
    calls = [_call(c, f"label.calls[{k}]") for k, c in enumerate(lab.get("calls") or [])]
    text = lab.get("text")
    if calls and text:
        raise ValueError("label has both calls and text")
    if not calls and not (isinstance(text, str) and text.strip()):
        raise ValueError("label has neither calls nor a text reply")
    kind = lab.get("kind")  # a no-call child's kind; without one its text is read
    if kind is not None and (calls or kind not in NO_CALL_KINDS):
        raise ValueError(f"label.kind {kind!r}: only a text reply has one, {NO_CALL_KINDS}")
    label = Label(calls=calls) if calls else Label(text=text, kind=kind)
    return Sample(tools=tools, context=messages, label=label)
