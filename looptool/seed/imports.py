"""Import real tool specs into the API pool: OpenAI tools JSON and BFCL function docs.

Accepted files:
- OpenAI / bare tools: a JSON list of ``{"type": "function", "function": {...}}`` or
  ``{"name", "description", "parameters"}`` objects, an object ``{"tools": [...]}``, or
  JSON lines with one tool per line.
- BFCL question files: JSON lines ``{"id": ..., "function": [doc, ...], ...}``.

A file that cannot be read as one of these, or whose every entry is rejected, raises
:class:`ToolImportError` naming the file (and line); a single entry that is not a valid
spec (e.g. an unknown JSON-schema type such as "strng") becomes a reject row naming the
file and entry. Careful: importing BFCL's own docs into the seed pool leaks evaluation
tools into training; use other files, or accept it knowingly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from looptool.core.types import ToolSpec, ToolSpecError, canonical_json
from looptool.seed.apis import api_row

ImportFormat = Literal["auto", "openai", "bfcl"]


class ToolImportError(ValueError):
    """An imported tool file is malformed; the message names the file (and line)."""


def _read_entries(path: Path, fmt: ImportFormat) -> list[tuple[str, Any]]:
    """(reference, raw tool) pairs in file order."""
    if not path.exists():
        raise ToolImportError(f"{path}: tool file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolImportError(f"{path}: cannot read: {exc}") from None
    if not text.strip():
        raise ToolImportError(f"{path}: file is empty")
    whole: Any = None
    whole_err: json.JSONDecodeError | None = None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        whole_err = exc
    if (
        whole_err is None
        and fmt != "bfcl"
        and not (isinstance(whole, dict) and "function" in whole)
    ):
        if isinstance(whole, dict) and "tools" in whole:
            whole = whole["tools"]
        elif isinstance(whole, dict):
            whole = [whole]
        if not isinstance(whole, list):
            raise ToolImportError(
                f"{path}: expected a JSON list of tools or an object with 'tools', "
                f"got {type(whole).__name__}"
            )
        return [(f"{path.name}#{i}", t) for i, t in enumerate(whole)]
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if whole_err is not None and len(lines) == 1:
        e = whole_err
        raise ToolImportError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}")
    out: list[tuple[str, Any]] = []
    for lineno, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ToolImportError(f"{path}: line {lineno}: invalid JSON: {exc.msg}") from None
        if isinstance(obj, dict) and "function" in obj and not obj.get("type") == "function":
            docs = obj["function"]
            if not isinstance(docs, list):
                raise ToolImportError(
                    f"{path}: line {lineno}: BFCL entry 'function' must be a list of docs"
                )
            ref = obj.get("id", f"line{lineno}")
            out.extend((f"{path.name}:{lineno}({ref})#{i}", d) for i, d in enumerate(docs))
        elif fmt == "bfcl":
            raise ToolImportError(
                f"{path}: line {lineno}: not a BFCL entry (needs a 'function' list of docs)"
            )
        else:
            out.append((f"{path.name}:{lineno}", obj))
    return out


def import_tools(
    path: str | Path,
    fmt: ImportFormat = "auto",
    domain: str | None = None,
    taken: set[str] | None = None,
    limit: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Read one tool file: (API rows, reject rows). ``taken`` names are skipped as dups."""
    p = Path(path)
    taken = set() if taken is None else taken
    entries = _read_entries(p, fmt)
    dom = domain or f"import:{p.stem}"
    rows: list[dict] = []
    rejects: list[dict] = []
    seen_specs: dict[str, str] = {}
    for ref, raw in entries:
        if limit is not None and len(rows) >= limit:
            break
        try:
            spec = ToolSpec.from_any(raw, ref)
        except ToolSpecError as exc:
            rejects.append(_reject(ref, "import", str(exc), raw))
            continue
        blob = canonical_json(spec.to_json())
        if spec.name in seen_specs or spec.name in taken:
            same = seen_specs.get(spec.name) == blob
            why = "same spec seen earlier in the file" if same else "name already in the pool"
            rejects.append(_reject(ref, "dedup", f"duplicate name {spec.name!r} ({why})", raw))
            continue
        seen_specs[spec.name] = blob
        taken.add(spec.name)
        ask = spec.description.strip().rstrip(".") or spec.name
        hints = {
            "ask": [ask[:1].lower() + ask[1:]],
            "object": spec.name,
            "params": {},
            "returns": {},
            "errors": [],
        }
        rows.append(api_row(spec, None, hints, dom, "import", origin_ref=ref))
    if not rows:  # a listed file that adds nothing is a mistake, not a quiet success
        raise ToolImportError(
            f"{p}: none of its {len(entries)} tool(s) could be imported; "
            f"first reason: {rejects[0]['item_id']}: {rejects[0]['reason']}"
        )
    return rows, rejects


def _reject(ref: str, tier: str, reason: str, raw: Any) -> dict:
    return {
        "stage": "seed_apis",
        "item_id": ref,
        "tier": tier,
        "reason": reason,
        "payload": json.dumps(raw, ensure_ascii=False, sort_keys=True, default=str),
    }
