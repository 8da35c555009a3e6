"""ToolACE records (Team-ACE/ToolACE ``data.json``): ``system`` + ``conversations``.

The tools are a JSON list inside the system prompt text ("Here is a list of functions in
JSON format that you can invoke: [...]"); turns are ``{"from": user|assistant|tool,
"value"}``. An assistant call turn is a Python-style list ``[f(a=1, b="x"), g()]``,
parsed with :mod:`ast` (keyword values must be literals; nothing is evaluated); a tool
turn is a JSON list of ``{"name", "results"}``, one result per call. Tool names with
characters a function name cannot hold (ToolACE has ``Market Trends API`` and
``/madlibs-diceware``) get ``_`` in their place, in the specs and the calls alike.
The same records re-exported for LLaMA-Factory (speakers ``human``, ``gpt``,
``function_call`` with JSON calls, ``observation``) are read too.
"""

from __future__ import annotations

import ast
import json
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
from looptool.seed.importers.chat import function_call_turn

_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
# ShareGPT / LLaMA-Factory speaker names of the same turns (ToolACE re-exported for
# LLaMA-Factory: human, gpt, function_call with JSON calls, observation)
_SPEAKERS = {"human": "user", "gpt": "assistant", "observation": "tool"}


def is_toolace(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("system"), str)
        and "conversations" in record
        and "<tools>" not in record["system"]
    )


def safe_name(name: str) -> str:
    return _BAD_NAME_CHARS.sub("_", name.strip())


def system_tools(system: str) -> list[dict]:
    """The first JSON list of named objects in the system prompt."""
    dec = json.JSONDecoder()
    for m in re.finditer(r"\[", system):
        try:
            value, _ = dec.raw_decode(system, m.start())
        except json.JSONDecodeError:
            continue
        if (
            value
            and isinstance(value, list)
            and all(isinstance(t, dict) and "name" in t for t in value)
        ):
            return value
    raise RecordError("no JSON list of functions in the system prompt")


def _func_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_func_name(node.value)}.{node.attr}"
    raise ValueError("not a function name")


def parse_calls(text: str, renames: dict[str, str]) -> list[ToolCall] | None:
    """``[f(a=1), g(b="x")]`` -> calls; None when the text is not a call list.

    A listed tool's name in call position is swapped for a placeholder identifier first,
    so names Python cannot parse (``Get Data``, ``/madlibs-diceware``) are calls too; text
    that names a listed tool that way but is no call list is a RecordError, not prose.
    """
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]") and "(" in body):
        return None
    holders: dict[str, str] = {}  # placeholder -> the tool's safe name
    swapped: dict[str, str] = {}  # placeholder + "(" -> the text it replaced
    for k, old in enumerate(sorted(renames, key=len, reverse=True)):
        at_call = re.compile(rf"([\[,]\s*)({re.escape(old)}\s*\()")
        holder = f"__looptool_fn{k}__"

        def swap(m: re.Match, holder: str = holder) -> str:
            swapped[holder + "("] = m.group(2)
            return m.group(1) + holder + "("

        body, n = at_call.subn(swap, body)
        if n:
            holders[holder] = renames[old]
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        raise RecordError(f"unparseable call list ({exc.msg}): {text.strip()[:80]!r}") from None
    if not isinstance(tree, ast.List) or not all(isinstance(e, ast.Call) for e in tree.elts):
        if holders:
            raise RecordError(f"a call of a listed tool, but no call list: {text.strip()[:80]!r}")
        return None
    calls = []
    for node in tree.elts:
        assert isinstance(node, ast.Call)
        try:
            name = _func_name(node.func)
            name = holders.get(name, name)
            if node.args:
                raise ValueError(f"{name}: positional arguments (only name=value is allowed)")
            args = {
                kw.arg: _unswap(ast.literal_eval(kw.value), swapped)
                for kw in node.keywords
                if kw.arg
            }
        except ValueError as exc:
            raise RecordError(f"call list: {exc}: {ast.unparse(node)[:80]!r}") from None
        calls.append(ToolCall(name=name, arguments=args))
    return calls


def _unswap(value: Any, swapped: dict[str, str]) -> Any:
    """A literal argument with the original text where a placeholder landed in a string."""
    if isinstance(value, str):
        for holder, text in swapped.items():
            value = value.replace(holder, text)
        return value
    if isinstance(value, list | tuple):
        return type(value)(_unswap(v, swapped) for v in value)
    if isinstance(value, dict):
        return {k: _unswap(v, swapped) for k, v in value.items()}
    return value


def parse(record: Any) -> tuple[list[ToolOutcome], list[Message] | None]:
    if not is_toolace(record):
        raise RecordError("not a ToolACE record (needs 'system' text and 'conversations')")
    raw_tools = system_tools(record["system"])
    renames = {t["name"]: safe_name(t["name"]) for t in raw_tools if isinstance(t["name"], str)}
    renamed = [dict(t, name=renames.get(t["name"], t["name"])) for t in raw_tools]
    outcomes = convert([(f"#{k}", t) for k, t in enumerate(renamed)], spec_of)
    messages: list[Message] = []
    for i, turn in enumerate(as_list(record["conversations"], "conversations")):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RecordError(f"turn {i}: expected {{from, value}} with text")
        who, text = _SPEAKERS.get(str(turn.get("from")), turn.get("from")), turn["value"]
        if who == "user":
            messages.append(Message(role="user", content=text))
        elif who == "assistant":
            calls = parse_calls(text, renames)
            if calls is None:
                messages.append(Message(role="assistant", content=text))
            else:
                messages.append(Message(role="assistant", tool_calls=calls))
        elif who == "function_call":  # LLaMA-Factory: one JSON call or a list of them
            calls = [
                c.model_copy(update={"name": renames.get(c.name, c.name)})
                for c in function_call_turn(text, f"turn {i}")
            ]
            messages.append(Message(role="assistant", tool_calls=calls))
        elif who == "tool":
            results = loose_value(text, f"turn {i} tool results")
            for r in results if isinstance(results, list) else [results]:
                name = r.get("name", "") if isinstance(r, dict) else ""
                value = r.get("results", r) if isinstance(r, dict) else r
                messages.append(
                    Message(role="tool", name=safe_name(str(name)), content=tool_result(value))
                )
        else:
            raise RecordError(f"turn {i}: unknown speaker {who!r}")
    return outcomes, messages
