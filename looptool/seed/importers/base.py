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
import sys
from collections.abc import Callable, Iterator
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


CHUNK = 1 << 20  # characters read at a time: memory stays flat in the file's size


class _Stream:
    """A UTF-8 text file read in chunks, with the line number of any position kept, the
    consumed text dropped and a progress bar (tqdm, bytes) when stderr is a terminal."""

    def __init__(self, path: Path, progress: bool | None = None) -> None:
        self.path = path
        try:
            self.fh = open(path, encoding="utf-8", newline="")  # noqa: SIM115 (closed by close)
        except OSError as exc:
            raise ToolImportError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self.buf, self.pos, self.base_line, self.eof = "", 0, 1, False
        show = sys.stderr.isatty() if progress is None else progress
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                            desc=f"reading {path.name}", file=sys.stderr, leave=False)  # fmt: skip

    def close(self) -> None:
        self.fh.close()
        if self.bar is not None:
            self.bar.close()

    def more(self, at_least: int = 0) -> bool:
        """Read more text (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        try:
            chunk = self.fh.read(max(CHUNK, at_least))
        except UnicodeDecodeError as exc:
            raise ToolImportError(
                f"{self.path}: line {self.line_at(len(self.buf))} or after: not UTF-8 text "
                f"({exc.reason}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise ToolImportError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if not chunk:
            self.eof = True
            return False
        if self.bar is not None:
            self.bar.update(len(chunk.encode("utf-8", "surrogatepass")))
        self.base_line += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return True

    def line_at(self, pos: int) -> int:
        return self.base_line + self.buf.count("\n", 0, pos)

    def skip(self, chars: str) -> str | None:
        """Skip ``chars``; the next character (None at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in chars:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def value(self) -> tuple[int, Any]:
        """(line, value) of the JSON value starting here, reading on while it is cut off."""
        dec = _DECODER
        while True:
            try:
                value, end = dec.raw_decode(self.buf, self.pos)
            except RecursionError:
                line = self.line_at(self.pos)
                raise ToolImportError(
                    f"{self.path}: line {line}: JSON nested too deeply to read"
                ) from None
            except json.JSONDecodeError as exc:
                cut = "Unterminated string" in exc.msg or len(self.buf) - exc.pos < 32
                if cut and self.more(len(self.buf)):  # grows geometrically for big values
                    continue
                line = self.line_at(exc.pos)
                col = exc.pos - self.buf.rfind("\n", 0, exc.pos)
                raise ToolImportError(
                    f"{self.path}: line {line} column {col}: invalid JSON: {exc.msg}"
                ) from None
            line = self.line_at(self.pos)
            self.pos = end
            return line, value


_DECODER = json.JSONDecoder()


# Keys of a dialogue record (OpenAI / ShareGPT chats, xLAM): an object holding one of them
# beside its ``tools`` is one record, never a bare tool list (its query would vanish).
_RECORD_KEYS = frozenset({"messages", "conversations", "query", "answers"})
_WS = " \t\r\n"


def iter_records(path: Path, progress: bool | None = None) -> Iterator[Record | Reject]:
    """The records of one import file as they are read (never the whole file at once):
    a JSON array's elements, one JSON object (its ``tools`` list, unless it is one
    record), or JSON lines (a line that does not parse is a Reject). Raises
    :class:`ToolImportError` when the file as a whole cannot be read."""
    if not path.is_file():
        raise ToolImportError(f"{path}: tool file not found")
    st = _Stream(path, progress)
    try:
        first = st.skip(_WS)
        if first is None:
            raise ToolImportError(f"{path}: file is empty")
        if first == "[":
            st.pos += 1
            while (c := st.skip(_WS + ",")) != "]":
                if c is None:
                    line = st.line_at(len(st.buf))
                    raise ToolImportError(f"{path}: line {line}: the JSON array is not closed")
                line, value = st.value()
                yield Record(line, value)
            st.pos += 1
            if st.skip(_WS) is not None:
                line = st.line_at(st.pos)
                raise ToolImportError(f"{path}: line {line}: text after the JSON array")
            return
        try:
            line, whole = st.value()
            alone = st.skip(_WS) is None
        except ToolImportError:
            whole, alone = None, False
        if alone:  # one JSON value: an object (a record or a tools list)
            if not isinstance(whole, dict):
                raise ToolImportError(
                    f"{path}: expected JSON lines, a JSON list of records or an object, "
                    f"got {type(whole).__name__}"
                )
            tools = whole.get("tools")
            if isinstance(tools, list) and not (_RECORD_KEYS & set(whole)):
                yield from _tool_lines(path, tools, line)
            else:
                yield Record(line, whole)
            return
    finally:
        st.close()
    yield from _json_lines(path, progress)


def _tool_lines(path: Path, tools: list, line: int) -> Iterator[Record]:
    """The elements of an object's ``tools`` list, each with the line it starts on (the
    object's line when the list cannot be found in the text again)."""
    st = _Stream(path, progress=False)
    try:
        found: list[Record] = []
        while True:  # the "tools" key of the top-level object, then its list
            c = st.skip(_WS + "{,")
            if c != '"':
                break
            _, key = st.value()
            st.skip(_WS + ":")
            if key != "tools":
                st.value()
                continue
            st.pos += 1
            while st.skip(_WS + ",") not in ("]", None):
                found.append(Record(*st.value()))
            break
    except ToolImportError:
        found = []
    finally:
        st.close()
    if [r.value for r in found] == tools:
        yield from found
    else:
        yield from (Record(line, t) for t in tools)


def _json_lines(path: Path, progress: bool | None) -> Iterator[Record | Reject]:
    st = _Stream(path, progress)
    n_lines = n_records = 0
    first_err: tuple[int, str] | None = None  # (line, what is wrong with it)
    lineno = 0
    try:
        while True:
            nl = st.buf.find("\n", st.pos)
            while nl < 0 and st.more():
                nl = st.buf.find("\n", st.pos)
            if nl < 0 and st.pos >= len(st.buf):
                break
            end = nl if nl >= 0 else len(st.buf)
            text = st.buf[st.pos : end]
            st.pos = end + 1
            lineno += 1
            if not text.strip():
                continue
            n_lines += 1
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                first_err = first_err or (lineno, f" column {exc.colno}: invalid JSON: {exc.msg}")
                yield Reject(lineno, f"{path.name}:{lineno}", f"invalid JSON: {exc.msg}")
                continue
            except RecursionError:
                first_err = first_err or (lineno, ": JSON nested too deeply to read")
                yield Reject(lineno, f"{path.name}:{lineno}", "JSON nested too deeply to read")
                continue
            n_records += 1
            yield Record(lineno, value)
    finally:
        st.close()
    if n_records == 0:
        if n_lines == 1 and first_err is not None:
            raise ToolImportError(f"{path}: line {first_err[0]}{first_err[1]}")
        raise ToolImportError(f"{path}: no line is valid JSON (line {first_line(path)} first)")


def first_line(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return next((i for i, ln in enumerate(fh, 1) if ln.strip()), 1)


def read_records(path: Path) -> tuple[list[Record], list[Reject]]:
    """(records, rejects for JSON lines that do not parse) of one import file, as lists."""
    records: list[Record] = []
    rejects: list[Reject] = []
    for item in iter_records(path, progress=False):
        (records if isinstance(item, Record) else rejects).append(item)
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
