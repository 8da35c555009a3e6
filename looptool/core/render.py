"""Samples as readable text for judge, EDDE and near-duplicate prompts: never raw
chat-template tokens (DESIGN §5), one rendering for every consumer."""

from __future__ import annotations

import json

from looptool.core.types import Message, ToolSpec


def dump_json(obj: object) -> str:
    """Compact, key-sorted JSON with unicode kept."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def render_tools(tools: list[ToolSpec]) -> str:
    """One JSON line per tool schema."""
    return "\n".join(dump_json(t.to_json()) for t in tools)


def render_conversation(context: list[Message]) -> str:
    """The conversation as role-tagged paragraphs; tool calls as JSON lines."""
    parts = []
    for m in context:
        if m.role == "assistant" and m.tool_calls:
            calls = "\n".join(dump_json(c.to_json()) for c in m.tool_calls)
            text = f"\n{m.content}" if m.content else ""
            parts.append(f"[assistant] function call(s):\n{calls}{text}")
        elif m.role == "tool":
            parts.append(f"[function result{' of ' + m.name if m.name else ''}] {m.content}")
        else:
            parts.append(f"[{m.role}] {m.content}")
    return "\n\n".join(parts)
