"""Importers for the tool and dialogue formats users have on disk, one module per format.

    openai     OpenAI tools JSON / bare specs, and OpenAI chats (messages + tools)
    hermes     ShareGPT chats (conversations from/value, <tools>, <tool_call> blocks)
    xlam       xLAM / APIGen: query, tools (map-style parameters), answers
    toolace    ToolACE: tools inside the system prompt, Python-style call lists
    bfcl       BFCL questions + possible answers (first acceptable value = label)
    toolbench  ToolBench: RapidAPI tool documents, instruction records, answer files
    mcp        MCP tools/list results (JSON-RPC responses, bare results or single tools)

:func:`read_import` reads one file into tools, dialogues and rejects (file:line and a
reason for every bad record); ``auto`` picks the format from the first record.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from looptool.core.types import Message
from looptool.seed.importers import bfcl, chat, mcp, toolace, toolbench, xlam
from looptool.seed.importers.base import (
    ImportedDialogue,
    ImportedTool,
    ImportResult,
    Record,
    RecordError,
    Reject,
    ToolImportError,
    ToolOutcome,
    iter_records,
)
from looptool.seed.importers.dialogue import plan_acts

FORMATS = ("openai", "hermes", "xlam", "toolace", "bfcl", "toolbench", "mcp")
ImportFormat = Literal["auto", "openai", "hermes", "xlam", "toolace", "bfcl", "toolbench", "mcp"]

Parser = Callable[[Any], tuple[list[ToolOutcome], list[Message] | None]]

_EXPECTED = ", ".join(
    (
        "OpenAI chat {messages, tools} or tool spec {name, parameters}",
        "Hermes/ShareGPT {conversations: [{from, value}]}",
        "xLAM {query, tools, answers}",
        "ToolACE {system, conversations}",
        "BFCL {id, question, function}",
        "ToolBench tool document {tool_name, api_list}, instruction {query, api_list} "
        "or answer file {answer_generation}",
        "MCP tools/list result {tools: [{name, inputSchema}]} (or its JSON-RPC response)",
    )
)


def detect(record: Any) -> str | None:
    """The format one record is written in (None: none fits)."""
    checks = (
        ("bfcl", bfcl.is_bfcl),
        ("toolbench", toolbench.is_toolbench),
        ("xlam", xlam.is_xlam),
        ("toolace", toolace.is_toolace),
        ("mcp", mcp.is_mcp),
        ("hermes", chat.is_sharegpt),
        ("openai", chat.is_chat),
        ("openai", chat.is_tool),
    )
    return next((name for name, fits in checks if fits(record)), None)


def _detect_file(path: Path, records: list) -> str:
    """The format of the first record that fits one (a bad first record is a reject)."""
    fits = next((r for r in records if detect(r.value) or bfcl.is_answer(r.value)), None)
    first, line = (fits or records[0]).value, (fits or records[0]).line
    if bfcl.is_answer(first):
        raise ToolImportError(
            f"{path}: line {line}: a BFCL possible-answer file; import the question file "
            "(its answers are read from possible_answer/<same name> or `answers`)"
        )
    fmt = detect(first)
    if fmt is None:
        keys = sorted(first)[:8] if isinstance(first, dict) else type(first).__name__
        raise ToolImportError(
            f"{path}: line {line}: no import format fits this record (keys {keys}); "
            f"expected one of: {_EXPECTED}"
        )
    return fmt


def _with_places(
    items: Iterable[Record | Reject],
) -> Iterator[tuple[Record, str] | tuple[Reject, None]]:
    """Each record with its place: its line, or ``line#i`` (i: its index in the file)
    when another record shares that line (a one-line JSON list); the rejects of reading in
    between pass through in file order. One record of lookahead."""
    prev_line, cur, i = None, None, -1
    for nxt in items:
        if isinstance(nxt, Reject):  # a line of its own: the next record is on a later one
            if cur is not None:
                yield cur, f"{cur.line}" + (f"#{i}" if cur.line == prev_line else "")
                prev_line, cur = cur.line, None
            yield nxt, None
            continue
        if cur is not None:
            shared = cur.line in (prev_line, nxt.line)
            yield cur, f"{cur.line}" + (f"#{i}" if shared else "")
            prev_line = cur.line
        cur, i = nxt, i + 1
    if cur is not None:
        yield cur, f"{cur.line}" + (f"#{i}" if cur.line == prev_line else "")


def _limited(items: Iterator[Record | Reject], limit: int | None) -> Iterator[Record | Reject]:
    """``items`` up to the ``limit``-th record (rejects before it included)."""
    n = 0
    for item in items:
        yield item
        if isinstance(item, Record):
            n += 1
            if limit is not None and n >= limit:
                return


def _parser(fmt: str, path: Path, answers: str | None) -> Parser:
    if fmt == "bfcl":
        table = bfcl.load_answers(bfcl.answers_path(path, answers))
        return lambda rec: bfcl.parse(rec, table)
    return {
        "openai": chat.parse,
        "hermes": chat.parse,
        "xlam": xlam.parse,
        "toolace": toolace.parse,
        "toolbench": toolbench.parse,
        "mcp": mcp.parse,
    }[fmt]


ImportItem = ImportedTool | ImportedDialogue | Reject


class ImportStream:
    """One file read as a stream: ``for item in stream`` gives its tools, dialogues and a
    reject per bad record (or tool) as the file is read, rejects in line order; nothing is
    kept. ``format`` is known once constructed (``auto``: the first record that fits a
    format decides); ``records`` counts the records read so far.

    A tool that fails the JSON-schema checks is rejected; a dialogue whose tools fail,
    or whose conversation has no plan shape (see :mod:`.dialogue`), is rejected whole.
    Raises :class:`ToolImportError` when the file as a whole cannot be read.
    """

    def __init__(
        self,
        path: str | Path,
        fmt: ImportFormat = "auto",
        answers: str | None = None,
        limit: int | None = None,
        progress: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.records = 0
        self._items = _limited(iter_records(self.path, progress), limit)
        self._head: list[Record | Reject] = []
        if fmt == "auto":  # the first record that fits a format decides (usually the first)
            for item in self._items:
                self._head.append(item)
                if isinstance(item, Record) and (detect(item.value) or bfcl.is_answer(item.value)):
                    break
            head = [r for r in self._head if isinstance(r, Record)]
            if not head:
                raise ToolImportError(f"{self.path}: no record to import")
            fmt = _detect_file(self.path, head)  # type: ignore[assignment]
        self.format: str = fmt
        self._parse = _parser(fmt, self.path, answers)

    def __iter__(self) -> Iterator[ImportItem]:
        p, head, self._head = self.path, self._head, []
        for rec, place in _with_places(itertools.chain(head, self._items)):
            if isinstance(rec, Reject):
                yield rec
                continue
            self.records += 1
            ref = f"{p.name}:{place}"
            try:
                outcomes, messages = self._parse(rec.value)
                if messages is not None:
                    dialogue = _dialogue(rec.line, place, ref, outcomes, messages)
                    yield dialogue
                    for s, t in outcomes:
                        yield ImportedTool(rec.line, ref + s, t, True)  # type: ignore[arg-type]
                    continue
            except RecordError as exc:
                yield Reject(rec.line, ref, str(exc), rec.value)
                continue
            for suffix, spec in outcomes:
                if isinstance(spec, RecordError):
                    yield Reject(rec.line, ref + suffix, str(spec), rec.value)
                else:  # mcp: (spec, output schema)
                    spec, returns = spec if isinstance(spec, tuple) else (spec, None)
                    yield ImportedTool(rec.line, ref + suffix, spec, returns=returns)


def read_import(
    path: str | Path,
    fmt: ImportFormat = "auto",
    answers: str | None = None,
    limit: int | None = None,
) -> ImportResult:
    """Read one file into lists: its tools, its dialogues and a reject per bad record (or
    tool), in file order (:class:`ImportStream`, kept whole: for small files and tests)."""
    stream = ImportStream(path, fmt, answers, limit)
    res = ImportResult(path=stream.path, format=stream.format)
    for item in stream:
        if isinstance(item, ImportedTool):
            res.tools.append(item)
        elif isinstance(item, ImportedDialogue):
            res.dialogues.append(item)
        else:
            res.rejects.append(item)
    res.records = stream.records
    return res


def _dialogue(
    line: int, place: str, ref: str, outcomes: list[ToolOutcome], messages: list[Message]
):
    bad = [(s, t) for s, t in outcomes if isinstance(t, RecordError)]
    if bad:
        raise RecordError(str(bad[0][1]))
    specs = {}
    for _, t in outcomes:
        assert not isinstance(t, RecordError)
        if t.name in specs and specs[t.name] != t:
            raise RecordError(f"two different tools named {t.name!r}")
        specs[t.name] = t
    plan_acts(messages)  # raises RecordError when the conversation has no plan shape
    return ImportedDialogue(line, ref, list(specs.values()), messages, place)


__all__ = [
    "FORMATS",
    "ImportFormat",
    "ImportItem",
    "ImportResult",
    "ImportStream",
    "ImportedDialogue",
    "ImportedTool",
    "Reject",
    "ToolImportError",
    "detect",
    "read_import",
]
