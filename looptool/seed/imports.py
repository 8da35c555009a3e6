"""`seed.apis.imports`: imported files -> API pool rows, imported dialogues, reject rows.

Each file is read by :mod:`looptool.seed.importers` (formats: openai, hermes, xlam,
toolace, bfcl, toolbench, mcp, or auto). Its tools join the API pool (a name already in the
pool, or a different spec under a name seen earlier in the file, is a ``dedup`` reject;
an identical repeat, as in dialogue datasets that list the same tool per record, is
counted, not rejected, and so is a dialogue's tool whose name the pool already holds
with another spec: the dialogue keeps its own spec). Its dialogues become DIALOGUES rows (``imported.parquet``) that
seed_verify checks with the same tiers as simulated ones; their samples carry origin
``import``. A file that yields nothing raises :class:`ToolImportError` naming it.
Careful: importing BFCL's own files leaks evaluation items into training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.tables import REJECTS
from looptool.core.types import canonical_json
from looptool.params.seed import ToolImport
from looptool.seed.apis import _reject as api_reject
from looptool.seed.apis import api_row
from looptool.seed.importers import ImportFormat, ImportStream, Reject, ToolImportError
from looptool.seed.importers.base import ImportedDialogue, ImportedTool
from looptool.seed.importers.dialogue import dialogue_row
from looptool.store.stream import ParquetRows, Spool

__all__ = [
    "FileImport",
    "ImportedFile",
    "ToolImportError",
    "import_file",
    "import_into",
    "import_origin",
    "import_tools",
    "mark_imported",
    "reject_row",
]


@dataclass
class ImportedFile:
    """What one `seed.apis.imports` entry adds to the seed data, as lists (small files,
    tests; the seed_apis stage and `looptool seed import` stream :class:`FileImport`)."""

    path: str
    format: str
    apis: list[dict] = field(default_factory=list)
    dialogues: list[dict] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    records: int = 0
    repeated_tools: int = 0
    tool_variants: int = 0

    def reject_rows(self) -> list[dict]:
        """REJECTS rows (looptool.core.tables) of this file's rejects."""
        return [reject_row(r) for r in self.rejects]

    def metrics(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "records": self.records,
            "tools": len(self.apis),
            "repeated_tools": self.repeated_tools,
            "tool_variants": self.tool_variants,
            "dialogues": len(self.dialogues),
            "rejected": len(self.rejects),
        }


class FileImport:
    """One file read into API rows (names in ``taken`` are dups), dialogue rows and
    rejects as a stream: ``for kind, item in run`` gives ``("api", API row)``,
    ``("dialogue", DIALOGUES row)``, ``("reject", Reject)`` (unreadable records and tools,
    in line order) and ``("dedup", Reject)`` (a tool whose name is taken, in line order;
    listed after the file's other rejects). Only the names seen are kept; the counts
    (:meth:`metrics`) are complete when the loop ends.

    ``limit`` caps the records read; ``samples=False`` keeps the tools only;
    ``first_index`` numbers the dialogue rows on from earlier files; ``require_any``:
    a file that yields nothing is an error (raised when the loop ends).
    """

    def __init__(
        self,
        path: str | Path,
        fmt: ImportFormat = "auto",
        domain: str | None = None,
        taken: set[str] | None = None,
        limit: int | None = None,
        answers: str | None = None,
        samples: bool = True,
        first_index: int = 0,
        require_any: bool = True,
        progress: bool | None = None,
    ) -> None:
        self.path = str(path)
        self.stream = ImportStream(path, fmt, answers, limit, progress)
        self.format = self.stream.format
        self.taken = set() if taken is None else taken
        self.domain = domain or f"import:{self.stream.path.stem}"
        self.samples, self.first_index, self.require_any = samples, first_index, require_any
        self.counts = dict.fromkeys(("tools", "dialogues", "rejected", "repeated", "variants"), 0)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        seen: dict[str, bytes] = {}  # name -> digest of the spec the pool keeps
        n, first, first_dedup = self.counts, None, None
        for item in self.stream:
            if isinstance(item, Reject):
                n["rejected"] += 1
                first = first or item
                yield "reject", item
            elif isinstance(item, ImportedDialogue):
                if self.samples:
                    index = self.first_index + n["dialogues"]
                    n["dialogues"] += 1
                    yield "dialogue", dialogue_row(item, self.path, self.format, index)
            else:
                row = self._tool(item, seen)
                if isinstance(row, Reject):
                    n["rejected"] += 1
                    first_dedup = first_dedup or row
                    yield "dedup", row
                elif row is not None:
                    n["tools"] += 1
                    yield "api", row
        if self.require_any and not n["tools"] and not n["dialogues"]:
            first = first or first_dedup  # the file's rejects are listed before dedup ones
            why = f"; first reason: {first.ref}: {first.reason}" if first else ""
            raise ToolImportError(
                f"{self.path}: none of its {self.stream.records} record(s) could be imported{why}"
            )

    def _tool(self, tool: ImportedTool, seen: dict[str, bytes]) -> dict | Reject | None:
        """The API row of a new tool, a dedup Reject, or None (a repeat or a variant)."""
        spec = tool.spec
        digest = hashlib.blake2b(canonical_json(spec.to_json()).encode(), digest_size=16).digest()
        if seen.get(spec.name) == digest:
            self.counts["repeated"] += 1
            return None
        if tool.in_dialogue and (spec.name in seen or spec.name in self.taken):
            self.counts["variants"] += 1  # its dialogue keeps it; the pool keeps the first spec
            return None
        if spec.name in seen or spec.name in self.taken:
            why = (
                "a different spec came earlier in the file"
                if spec.name in seen
                else "name already in the pool"
            )
            reason = f"duplicate name {spec.name!r} ({why})"
            return Reject(tool.line, tool.ref, reason, spec.to_json(), "dedup")
        seen[spec.name] = digest
        self.taken.add(spec.name)
        ask = spec.description.strip().rstrip(".") or spec.name
        hints = {
            "ask": [ask[:1].lower() + ask[1:]],
            "object": spec.name,
            "params": {},
            "returns": {},
            "errors": [],
        }
        return api_row(spec, tool.returns, hints, self.domain, "import", origin_ref=tool.ref)

    def metrics(self) -> dict[str, Any]:
        n = self.counts
        return {
            "format": self.format,
            "records": self.stream.records,
            "tools": n["tools"],
            "repeated_tools": n["repeated"],
            "tool_variants": n["variants"],
            "dialogues": n["dialogues"],
            "rejected": n["rejected"],
        }


def import_file(
    path: str | Path,
    fmt: ImportFormat = "auto",
    domain: str | None = None,
    taken: set[str] | None = None,
    limit: int | None = None,
    answers: str | None = None,
    samples: bool = True,
    first_index: int = 0,
    require_any: bool = True,
) -> ImportedFile:
    """:class:`FileImport` kept whole as lists (the file's rejects, then its dedup ones)."""
    run = FileImport(path, fmt, domain, taken, limit, answers, samples, first_index, require_any)
    out = ImportedFile(str(path), run.format)
    dedup: list[Reject] = []
    lists = {"api": out.apis, "dialogue": out.dialogues, "reject": out.rejects, "dedup": dedup}
    for kind, item in run:
        lists[kind].append(item)
    out.rejects += dedup
    out.records = run.stream.records
    out.repeated_tools, out.tool_variants = run.counts["repeated"], run.counts["variants"]
    return out


def import_into(
    imp: ToolImport, taken: set[str], apis: ParquetRows, rejects: ParquetRows,
    dialogues: ParquetRows,
) -> dict[str, Any]:  # fmt: skip
    """One `seed.apis.imports` entry streamed into the seed_apis tables as it is read:
    its tools to ``apis``, its rejects to ``rejects`` (the dedup ones after the others, as
    :func:`import_file` lists them; spooled to disk till then), its dialogues to
    ``dialogues`` (numbered on from the rows there). Returns the file's metrics."""
    run = FileImport(imp.path, imp.format, imp.domain, taken, imp.limit, imp.answers,
                     imp.samples, first_index=dialogues.rows)  # fmt: skip
    with Spool(REJECTS) as dedup:
        for kind, item in run:
            if kind == "api":
                apis.add(item)
            elif kind == "dialogue":
                dialogues.add(item)
            else:
                (rejects if kind == "reject" else dedup).add(reject_row(item))
        rejects.add_batches(dedup.batches())
    return run.metrics()


def import_tools(
    path: str | Path,
    fmt: ImportFormat = "auto",
    domain: str | None = None,
    taken: set[str] | None = None,
    limit: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Tools only: (API rows, reject rows) of one file."""
    f = import_file(path, fmt, domain, taken, limit, samples=False)
    return f.apis, f.reject_rows()


def import_origin(dialogue: dict) -> dict | None:
    """{file, format, line} of an imported DIALOGUES row; None for a simulated one."""
    return json.loads(dialogue["agents"]).get("import")


def mark_imported(dialogues: list[dict], train: list[dict], heldout: list[dict]) -> dict:
    """Give samples of imported dialogues origin ``import`` (in place); per file: format,
    dialogues and train / held-out sample counts."""
    origin = {d["dialogue_id"]: o for d in dialogues if (o := import_origin(d)) is not None}
    counts: dict[str, dict[str, Any]] = {}
    for o in origin.values():
        c = counts.setdefault(
            o["file"], {"format": o["format"], "dialogues": 0, "train": 0, "heldout": 0}
        )
        c["dialogues"] += 1
    for split, rows in (("train", train), ("heldout", heldout)):
        for r in rows:
            o = origin.get(r["dialogue_id"])
            if o is not None:
                r["origin"] = "import"
                counts[o["file"]][split] += 1
    return dict(sorted(counts.items()))


def reject_row(r: Reject) -> dict:
    """The REJECTS row (looptool.core.tables) of one import reject."""
    return api_reject(r.ref, r.tier, r.reason, r.payload)
