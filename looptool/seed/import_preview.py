"""The dry run of `looptool seed import`: what `seed.apis.imports` would take from one
file, before the intent tier (which needs an engine). Writes nothing the user sees.

The file is read as a stream (:class:`looptool.seed.imports.FileImport`): each dialogue
goes through the rule tier and sample building as it is read, and the tools and rejects
to list are spooled to anonymous temp files (:class:`looptool.store.stream.Spool`), so
memory stays flat in the file's size however many there are.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from looptool.core.types import Message, ToolSpec
from looptool.seed.importers import ImportFormat
from looptool.seed.imports import FileImport, import_origin
from looptool.store.stream import Spool

TOOL_ROWS = pa.schema([("name", pa.string()), ("parameters", pa.list_(pa.string()))])
REJECT_ROWS = pa.schema([("line", pa.int64()), ("reason", pa.string())])
# every kind of reject, each in line order; listed merged by line (ties in this order)
_REJECT_KINDS = ("reject", "dedup", "rules", "samples")


class ImportPreview:
    """One file's preview: ``format``, ``records``, ``samples``, ``n_tools`` and
    ``n_rejects`` once built; :meth:`tools` ({name, parameters}) and :meth:`rejects`
    ({line, reason}: of reading, of the rule tier and of sample building, by line) read
    the spooled lists back, once each. Use it as a context manager (closes the spools)."""

    def __init__(
        self,
        path: str | Path,
        fmt: ImportFormat = "auto",
        answers: str | None = None,
        no_call_acts: set[str] | None = None,
        progress: bool | None = None,
    ) -> None:
        from looptool.params.seed import SeedParams

        acts = set(SeedParams().no_call_acts) if no_call_acts is None else no_call_acts
        run = FileImport(path, fmt, answers=answers, require_any=False, progress=progress)
        self.format = run.format
        self.samples = 0
        self._tools = Spool(TOOL_ROWS)
        self._rejects = {k: Spool(REJECT_ROWS) for k in _REJECT_KINDS}
        seen_ids: dict[str, str] = {}  # sample dedup across the file's dialogues
        try:
            for kind, item in run:
                if kind == "api":
                    spec = json.loads(item["spec"])
                    params = list(spec["parameters"]["properties"])
                    self._tools.add({"name": spec["name"], "parameters": params})
                elif kind == "dialogue":
                    self._dialogue(item, acts, seen_ids)
                else:
                    self._rejects[kind].add({"line": item.line, "reason": item.reason})
        except BaseException:
            self.close()
            raise
        self.records = run.stream.records
        self.n_tools = self._tools.rows
        self.n_rejects = sum(s.rows for s in self._rejects.values())

    def _dialogue(self, d: dict, acts: set[str], seen_ids: dict[str, str]) -> None:
        from looptool.seed.samples import build_samples
        from looptool.seed.verify import rule_problems

        line = import_origin(d)["line"]  # type: ignore[index]
        tools = [ToolSpec.model_validate(t) for t in json.loads(d["tools"])]
        messages = [Message.model_validate(m) for m in json.loads(d["messages"])]
        problems = rule_problems(tools, messages, json.loads(d["acts"]), {}, open_end=True)
        if problems:
            reason = "rules: " + "; ".join(problems[:3])
            self._rejects["rules"].add({"line": line, "reason": reason})
            return
        samples, _, rejects, _ = build_samples([d], 0.0, 0, acts, seen_ids=seen_ids)
        self.samples += len(samples)
        for r in rejects:
            self._rejects["samples"].add({"line": line, "reason": f"{r['tier']}: {r['reason']}"})

    def tools(self) -> Iterator[dict]:
        return self._tools.iter_rows()

    def rejects(self) -> Iterator[dict]:
        streams = [self._rejects[k].iter_rows() for k in _REJECT_KINDS]
        return heapq.merge(*streams, key=lambda r: r["line"])  # stable: a sort by line

    def close(self) -> None:
        for s in (self._tools, *self._rejects.values()):
            s.close()

    def __enter__(self) -> ImportPreview:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def preview_import(
    path: str | Path,
    fmt: ImportFormat = "auto",
    answers: str | None = None,
    no_call_acts: set[str] | None = None,
) -> dict[str, Any]:
    """:class:`ImportPreview` as one dict (lists kept whole: small files, tests):
    ``{"format", "records", "tools": [{name, parameters}], "samples", "rejects":
    [{line, reason}]}``."""
    with ImportPreview(path, fmt, answers, no_call_acts) as p:
        return {
            "format": p.format,
            "records": p.records,
            "tools": list(p.tools()),
            "samples": p.samples,
            "rejects": list(p.rejects()),
        }
