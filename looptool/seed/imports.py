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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.types import canonical_json
from looptool.seed.apis import _reject as api_reject
from looptool.seed.apis import api_row
from looptool.seed.importers import ImportFormat, Reject, ToolImportError, read_import
from looptool.seed.importers.dialogue import dialogue_row

__all__ = [
    "ImportedFile",
    "ToolImportError",
    "import_file",
    "import_origin",
    "import_tools",
    "mark_imported",
]


@dataclass
class ImportedFile:
    """What one `seed.apis.imports` entry adds to the seed data."""

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
        return [_reject_row(r) for r in self.rejects]

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
    """Read one file into API rows (names in ``taken`` are dups), dialogue rows, rejects.

    ``limit`` caps the records read; ``samples=False`` keeps the tools only;
    ``first_index`` numbers the dialogue rows on from earlier files; ``require_any``:
    a file that yields nothing is an error.
    """
    res = read_import(path, fmt, answers, limit)
    taken = set() if taken is None else taken
    out = ImportedFile(str(path), res.format, records=res.records)
    out.rejects = list(res.rejects)
    dom = domain or f"import:{res.path.stem}"
    seen: dict[str, str] = {}
    for tool in res.tools:
        spec = tool.spec
        blob = canonical_json(spec.to_json())
        if seen.get(spec.name) == blob:
            out.repeated_tools += 1
            continue
        if tool.in_dialogue and (spec.name in seen or spec.name in taken):
            out.tool_variants += 1  # its dialogue keeps it; the pool keeps the first spec
            continue
        if spec.name in seen or spec.name in taken:
            why = (
                "a different spec came earlier in the file"
                if spec.name in seen
                else "name already in the pool"
            )
            reason = f"duplicate name {spec.name!r} ({why})"
            out.rejects.append(Reject(tool.line, tool.ref, reason, spec.to_json(), "dedup"))
            continue
        seen[spec.name] = blob
        taken.add(spec.name)
        ask = spec.description.strip().rstrip(".") or spec.name
        hints = {
            "ask": [ask[:1].lower() + ask[1:]],
            "object": spec.name,
            "params": {},
            "returns": {},
            "errors": [],
        }
        out.apis.append(api_row(spec, tool.returns, hints, dom, "import", origin_ref=tool.ref))
    if samples:
        out.dialogues = [
            dialogue_row(d, str(path), res.format, first_index + k)
            for k, d in enumerate(res.dialogues)
        ]
    if require_any and not out.apis and not out.dialogues:  # a listed file adds something
        first = out.rejects[0] if out.rejects else None
        why = f"; first reason: {first.ref}: {first.reason}" if first else ""
        raise ToolImportError(f"{path}: none of its {res.records} record(s) could be imported{why}")
    return out


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


def preview_import(
    path: str | Path,
    fmt: ImportFormat = "auto",
    answers: str | None = None,
    no_call_acts: set[str] | None = None,
) -> dict[str, Any]:
    """The dry run of `looptool seed import`: what `seed.apis.imports` would take from one
    file, before the intent tier (which needs an engine). Writes nothing.

    Returns ``{"format", "records", "tools": [{name, parameters}], "samples", "rejects":
    [{line, reason}]}``: rejects of reading, of the rule tier and of sample building.
    """
    from looptool.core.types import Message, ToolSpec
    from looptool.params.seed import SeedParams
    from looptool.seed.samples import build_samples
    from looptool.seed.verify import rule_problems

    f = import_file(path, fmt, answers=answers, require_any=False)
    rejects = [(r.line, r.reason) for r in f.rejects]
    passed = []
    for d in f.dialogues:
        tools = [ToolSpec.model_validate(t) for t in json.loads(d["tools"])]
        messages = [Message.model_validate(m) for m in json.loads(d["messages"])]
        problems = rule_problems(tools, messages, json.loads(d["acts"]), {}, open_end=True)
        if problems:
            rejects.append((import_origin(d)["line"], "rules: " + "; ".join(problems[:3])))
        else:
            passed.append(d)
    acts = set(SeedParams().no_call_acts) if no_call_acts is None else no_call_acts
    samples, _, sample_rejects, _ = build_samples(passed, 0.0, 0, acts)
    line_of = {d["dialogue_id"]: import_origin(d)["line"] for d in passed}
    for r in sample_rejects:
        dialogue_id = r["item_id"].rsplit("@", 1)[0]
        rejects.append((line_of[dialogue_id], f"{r['tier']}: {r['reason']}"))
    tools = [json.loads(a["spec"]) for a in f.apis]
    return {
        "format": f.format,
        "records": f.records,
        "tools": [
            {"name": t["name"], "parameters": list(t["parameters"]["properties"])} for t in tools
        ],
        "samples": len(samples),
        "rejects": [{"line": ln, "reason": why} for ln, why in sorted(rejects, key=lambda x: x[0])],
    }


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


def _reject_row(r: Reject) -> dict:
    return api_reject(r.ref, r.tier, r.reason, r.payload)
