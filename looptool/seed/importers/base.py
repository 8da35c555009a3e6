"""What every importer shares: reading records with their line numbers, loose JSON fields,
tool specs with a reason on failure, and the result types.

A file is read as JSON lines, a JSON array, or one JSON object (an object holding a
``tools`` list is read as that list, unless it also holds a record's messages,
conversations, query or answers: then it is that one record). Every record keeps the line it starts on, so a
reject names file, line and reason. A line of JSON lines that does not parse is a reject
row; a whole file that does not parse is a :class:`ToolImportError`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.types import Message, ToolSpec, ToolSpecError, canonical_json


class ToolImportError(ValueError):
    """An imported file is unusable as a whole; the message names the file (and line)."""


class RecordError(ValueError):
    """One record (or one tool in it) is bad; becomes a reject row with this reason."""


@dataclass(frozen=True)
class Record:
    line: int  # 1-based line the record starts on
    value: Any


@dataclass(frozen=True)
class Reject:
    line: int
    ref: str  # file:line, plus #k for the k-th tool of a record
    reason: str
    payload: Any = None
    tier: str = "import"  # import (unreadable record or tool) | dedup (name taken)


@dataclass(frozen=True)
class ImportedTool:
    line: int
    ref: str
    spec: ToolSpec
    in_dialogue: bool = False  # also lives in an imported dialogue's own tool list
    returns: dict | None = None  # JSON schema of the tool's results, when the format has one


@dataclass(frozen=True)
class ImportedDialogue:
    """One record's conversation: its tools and messages (system prompts dropped)."""

    line: int
    ref: str
    tools: list[ToolSpec]
    messages: list[Message]
    # where the record sits in its file: "line", or "line#k" (k-th record of the file)
    # when several records share that line; unique per record and stable across reruns
    place: str


@dataclass
class ImportResult:
    path: Path
    format: str
    records: int = 0
    tools: list[ImportedTool] = field(default_factory=list)
    dialogues: list[ImportedDialogue] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def read_text(path: Path) -> str:
    if not path.is_file():
        raise ToolImportError(f"{path}: tool file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolImportError(f"{path}: cannot read: {exc}") from None
    if not text.strip():
        raise ToolImportError(f"{path}: file is empty")
    return text


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _array_items(text: str, start: int) -> list[Record]:
    """Elements of the JSON array opening at ``start``, each with its first line."""
    dec = json.JSONDecoder()
    out: list[Record] = []
    pos = start + 1
    n = len(text)
    line, counted = _line_of(text, pos), pos  # counted incrementally: big files stay linear
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            return out
        value, end = dec.raw_decode(text, pos)
        line += text.count("\n", counted, pos)
        counted = pos
        out.append(Record(line, value))
        pos = end


# Keys of a dialogue record (OpenAI / ShareGPT chats, xLAM): an object holding one of them
# beside its ``tools`` is one record, never a bare tool list (its query would vanish).
_RECORD_KEYS = frozenset({"messages", "conversations", "query", "answers"})


def read_records(path: Path) -> tuple[list[Record], list[Reject]]:
    """(records, rejects for JSON lines that do not parse) of one import file."""
    text = read_text(path)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        whole, whole_err = None, exc
    else:
        whole_err = None
    if whole_err is None:
        start = len(text) - len(text.lstrip())
        if isinstance(whole, list):
            return _array_items(text, start), []
        if isinstance(whole, dict):
            tools = whole.get("tools")
            if isinstance(tools, list) and not (_RECORD_KEYS & set(whole)):
                try:
                    items = _array_items(text, text.find("[", text.find('"tools"')))
                except json.JSONDecodeError:
                    items = []
                if [r.value for r in items] != tools:  # "tools" also occurs earlier in text
                    items = [Record(_line_of(text, start), t) for t in tools]
                return items, []
            return [Record(_line_of(text, start), whole)], []
        raise ToolImportError(
            f"{path}: expected JSON lines, a JSON list of records or an object, "
            f"got {type(whole).__name__}"
        )
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if len(lines) == 1:
        e = whole_err
        raise ToolImportError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}")
    records, rejects = [], []
    for lineno, line in lines:
        try:
            records.append(Record(lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            rejects.append(Reject(lineno, f"{path.name}:{lineno}", f"invalid JSON: {exc.msg}"))
    if not records:
        raise ToolImportError(f"{path}: no line is valid JSON (line {lines[0][0]} first)")
    return records, rejects


def loose_value(value: Any, what: str) -> Any:
    """A field that may hold JSON text (or a Python literal, as some dumps do) -> value.

    ``ast.literal_eval`` reads literals only; it never evaluates code.
    """
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RecordError(f"{what} is neither JSON nor a literal") from None


def as_list(value: Any, what: str) -> list:
    value = loose_value(value, what)
    if not isinstance(value, list):
        raise RecordError(f"{what} must be a list, got {type(value).__name__}")
    return value


def spec_of(raw: Any, where: str) -> ToolSpec:
    """ToolSpec.from_any with its error as a record error (the reason names the tool)."""
    try:
        return ToolSpec.from_any(raw, where)
    except ToolSpecError as exc:
        raise RecordError(str(exc)) from None


def object_schema(props: dict[str, dict], required: list[str]) -> dict:
    """The ``parameters`` object schema of a tool built from per-parameter schemas."""
    return {"type": "object", "properties": props, **({"required": required} if required else {})}


# One record's tools: (ref suffix, the spec (mcp: with its output schema) or why it is rejected).
ToolOutcome = tuple[str, ToolSpec | tuple[ToolSpec, dict | None] | RecordError]


def convert(
    items: list[tuple[str, Any]], to_spec: Callable[[Any, str], ToolSpec]
) -> list[ToolOutcome]:
    """Each raw tool through ``to_spec``; a failure stays with its tool as the reason."""
    out: list[ToolOutcome] = []
    for suffix, raw in items:
        try:
            out.append((suffix, to_spec(raw, f"tool{suffix}")))
        except RecordError as exc:
            out.append((suffix, exc))
    return out


def tool_result(value: Any) -> str:
    """A tool result as stored: JSON text; plain text becomes a JSON string."""
    if isinstance(value, str):
        try:
            return canonical_json(json.loads(value))
        except json.JSONDecodeError:
            return canonical_json(value)
    return canonical_json(value)
