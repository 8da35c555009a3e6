"""ToolBench / RapidAPI tool documents (ToolBench ``data/toolenv/tools/<Category>/<tool>.json``).

A document is ``{"tool_name", "tool_description", "standardized_name"?, "api_list":
[{"name", "description", "method", "required_parameters": [{"name", "type",
"description", "default"}], "optional_parameters": [...]}]}``; a file holds one
document, a list of them, or one per line. Each API becomes a function named as
ToolBench names it: ``<api>_for_<tool>`` with both parts standardized (lowercase, runs of
other characters -> ``_``, a leading digit prefixed ``get_``, keyword-like API names
prefixed ``is_``), the last 64 characters kept. RapidAPI types map to JSON schema
(STRING, NUMBER, BOOLEAN, ENUM, ARRAY, OBJECT, DATE, TIME, GEOPOINT); another type
rejects that API with the reason. Tool documents hold no dialogues.
"""

from __future__ import annotations

import re
from typing import Any

from looptool.core.types import Message
from looptool.seed.importers.base import RecordError, ToolOutcome, convert, object_schema, spec_of

_RAPIDAPI_TYPES = {
    "STRING": {"type": "string"},
    "NUMBER": {"type": "number"},
    "INTEGER": {"type": "integer"},
    "FLOAT": {"type": "number"},
    "BOOLEAN": {"type": "boolean"},
    "ENUM": {"type": "string"},
    "ARRAY": {"type": "array"},
    "LIST": {"type": "array"},
    "OBJECT": {"type": "object"},
    "DATE (YYYY-MM-DD)": {"type": "string", "format": "date"},
    "TIME (24-HOUR HH:MM)": {"type": "string"},
    "GEOPOINT (LATITUDE, LONGITUDE)": {"type": "string"},
}
_KEYWORDS = {"from", "class", "return", "false", "true", "id", "and"}


def is_toolbench(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("api_list"), list)
        and ("tool_name" in record or "standardized_name" in record)
    )


def standardize(name: str) -> str:
    s = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", name)).strip("_").lower()
    return f"get_{s}" if s[:1].isdigit() else s


def _param(p: Any, where: str) -> tuple[str, dict]:
    if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
        raise RecordError(f"{where}: a parameter needs a 'name'")
    kind = str(p.get("type", "STRING")).strip().upper()
    if kind not in _RAPIDAPI_TYPES:
        raise RecordError(f"{where} {p['name']!r}: unknown RapidAPI type {p.get('type')!r}")
    schema = dict(_RAPIDAPI_TYPES[kind])
    if p.get("description"):
        schema["description"] = str(p["description"])
    if p.get("default") not in (None, ""):
        schema["examples"] = [p["default"]]
    return p["name"], schema


def api_spec(api: Any, where: str, tool: str, tool_desc: str):
    if not isinstance(api, dict) or not isinstance(api.get("name"), str) or not api["name"]:
        raise RecordError(f"{where}: an API needs a 'name'")
    pure = standardize(api["name"])
    pure = f"is_{pure}" if pure in _KEYWORDS else pure
    props, required = {}, []
    for key, is_req in (("required_parameters", True), ("optional_parameters", False)):
        for p in api.get(key) or []:
            name, schema = _param(p, f"{where} {key}")
            props[name] = schema
            if is_req:
                required.append(name)
    desc = str(api.get("description") or "").strip() or tool_desc
    body = object_schema(props, required)
    return spec_of(
        {"name": f"{pure}_for_{tool}"[-64:], "description": desc, "parameters": body}, where
    )


def parse(record: Any) -> tuple[list[ToolOutcome], list[Message] | None]:
    if not is_toolbench(record):
        raise RecordError("not a ToolBench tool document (needs 'tool_name' and 'api_list')")
    tool = standardize(str(record.get("standardized_name") or record.get("tool_name") or ""))
    if not tool:
        raise RecordError("the tool has no name")
    desc = str(record.get("tool_description") or "").strip()
    apis = [(f"#{k}", a) for k, a in enumerate(record["api_list"])]
    return convert(apis, lambda a, w: api_spec(a, w, tool, desc)), None
