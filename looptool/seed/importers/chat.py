"""OpenAI / Hermes-style function-calling chats, and plain OpenAI tool lists.

A chat record holds ``messages`` (OpenAI: ``role``/``content``) or ``conversations``
(ShareGPT: ``from``/``value``; roles human/gpt/tool as in NousResearch's
hermes-function-calling-v1, or LLaMA-Factory's function_call (JSON calls) and
observation), as a list or as JSON text. Tools come from the record's
``tools`` (list or JSON text; OpenAI ``{"type": "function", "function": ...}`` or bare
specs), the older OpenAI ``functions`` list (bare specs, paired with ``function_call``),
or, failing those, the ``<tools>...</tools>`` block of the system prompt.
Assistant calls are OpenAI ``tool_calls`` (``arguments`` as JSON text or an object), the
older single ``function_call``, or ``<tool_call>{...}</tool_call>`` blocks in the text;
tool results are ``tool`` messages (OpenAI: named through ``tool_call_id``) or
``<tool_response>{"name", "content"}</tool_response>`` blocks. System prompts are
dropped: LoopTool renders its own.

A record that is neither (a bare tool spec) is one tool, as in an OpenAI tools file.
"""

from __future__ import annotations

import re
from typing import Any

from looptool.core.types import Message, ToolCall
from looptool.seed.importers.base import (
    RecordError,
    ToolOutcome,
    as_list,
    convert,
    loose_value,
    spec_of,
    tool_result,
)

_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
    "function_call": "function_call",  # LLaMA-Factory ShareGPT: the turn is JSON call(s)
}
_BLOCK = {
    tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL)
    for tag in ("tool_call", "tool_response", "tools")
}


def is_chat(record: Any) -> bool:
    return isinstance(record, dict) and ("messages" in record or "conversations" in record)


def is_sharegpt(record: Any) -> bool:
    if not is_chat(record):
        return False
    msgs = record.get("conversations", record.get("messages"))
    return isinstance(msgs, list) and bool(msgs) and isinstance(msgs[0], dict) and "from" in msgs[0]


def is_tool(record: Any) -> bool:
    return isinstance(record, dict) and (
        isinstance(record.get("function"), dict)
        and record.get("type") == "function"
        or isinstance(record.get("name"), str)
        and not ({"api_list", "query", "answers"} & set(record))
    )


def call_of(raw: Any, where: str) -> ToolCall:
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        raw = raw["function"]
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise RecordError(f"{where}: a call needs a 'name'")
    args = loose_value(raw.get("arguments", raw.get("parameters", {})) or {}, f"{where}: arguments")
    if not isinstance(args, dict):
        raise RecordError(f"{where}: arguments must be an object")
    return ToolCall(name=raw["name"], arguments=args)


def function_call_turn(text: str, where: str) -> list[ToolCall]:
    """A LLaMA-Factory ``function_call`` turn: one JSON call or a list of them."""
    raw = loose_value(text, f"{where} function_call")
    return [
        call_of(c, f"{where} call {k}")
        for k, c in enumerate(raw if isinstance(raw, list) else [raw])
    ]


def _text(m: dict, where: str) -> str:
    text = m.get("content", m.get("value"))
    if text is None:
        return ""
    if isinstance(text, list):  # OpenAI content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not isinstance(text, str):
        raise RecordError(f"{where}: content must be text")
    return text


def read_messages(raw: list) -> tuple[list[Message], str]:
    """(messages without system prompts, the system text)."""
    out: list[Message] = []
    system: list[str] = []
    names: dict[str, str] = {}  # OpenAI tool_call_id -> function name
    pending: list[str] = []  # names of calls still waiting for a result, in order
    for i, m in enumerate(raw):
        here = f"message {i}"
        if not isinstance(m, dict):
            raise RecordError(f"{here}: expected an object")
        role = _ROLES.get(str(m.get("role", m.get("from", ""))).lower())
        if role is None:
            raise RecordError(f"{here}: unknown role {m.get('role', m.get('from'))!r}")
        text = _text(m, here)
        if role == "system":
            system.append(text)
        elif role == "function_call":
            calls = function_call_turn(text, here)
            pending = [c.name for c in calls]
            out.append(Message(role="assistant", tool_calls=calls))
        elif role == "assistant":
            calls = [call_of(c, here) for c in m.get("tool_calls") or []]
            for c, raw_call in zip(calls, m.get("tool_calls") or [], strict=True):
                if isinstance(raw_call, dict) and raw_call.get("id"):
                    names[str(raw_call["id"])] = c.name
            if m.get("function_call"):  # OpenAI's older API (ToolBench answers): one call
                calls.append(call_of(m["function_call"], f"{here} function_call"))
            if _BLOCK["tool_call"].search(text):
                calls += [
                    call_of(loose_value(b.strip(), f"{here} <tool_call>"), here)
                    for b in _BLOCK["tool_call"].findall(text)
                ]
                text = _BLOCK["tool_call"].sub("", text).strip()
            pending = [c.name for c in calls]
            out.append(Message(role="assistant", content=text, tool_calls=calls))
        elif role == "tool":
            blocks = _BLOCK["tool_response"].findall(text)
            if blocks:
                for b in blocks:
                    value = loose_value(b.strip(), f"{here} <tool_response>")
                    if isinstance(value, dict) and "name" in value:
                        name = str(value["name"])
                        value = value.get("content", value.get("result", value))
                    else:
                        name = pending[0] if pending else ""
                    pending = pending[1:]
                    out.append(Message(role="tool", name=name, content=tool_result(value)))
                continue
            name = m.get("name") or names.get(str(m.get("tool_call_id")))
            name = name or (pending[0] if pending else "")
            pending = pending[1:]
            out.append(Message(role="tool", name=str(name), content=tool_result(text)))
        else:
            out.append(Message(role="user", content=text))
    return out, "\n".join(system)


def _tool_list(record: dict, system: str) -> list:
    for key in ("tools", "functions"):
        if record.get(key) not in (None, "", []):
            return as_list(record[key], key)
    # the first non-empty block: prompts often say "within <tools></tools> tags" first
    body = next((b.strip() for b in _BLOCK["tools"].findall(system) if b.strip()), None)
    if body is None:
        raise RecordError(
            "no tools (no 'tools' or 'functions' field, no <tools> in the system prompt)"
        )
    if body.startswith("["):
        return as_list(body, "<tools>")
    # one spec per line / back to back: wrap as a list
    items = [loose_value(ln, "<tools>") for ln in body.splitlines() if ln.strip()]
    return items


def parse(record: Any) -> tuple[list[ToolOutcome], list[Message] | None]:
    """(the record's tools, its messages; None for a bare tool record)."""
    if not is_chat(record):
        if not isinstance(record, dict):
            raise RecordError(f"expected an object, got {type(record).__name__}")
        return convert([("", record)], spec_of), None
    raw = record.get("messages", record.get("conversations"))
    messages, system = read_messages(as_list(raw, "messages"))
    tools = _tool_list(record, system)
    return convert([(f"#{k}", t) for k, t in enumerate(tools)], spec_of), messages
