"""xLAM / APIGen records (Salesforce/xlam-function-calling-60k): ``query``, ``tools``,
``answers`` (the last two as lists or as JSON text).

An xLAM tool's ``parameters`` is a map ``name -> {type, description, default}`` whose
types are Python-style: ``str``, ``int``, ``float``, ``bool``, ``List[int]``,
``Dict[str, Any]``, ``Tuple[..]``, ``Union[a, b]``, ``Optional[x]``, ``Any``, with a
``, optional`` suffix marking optional parameters. They become real JSON-schema
``properties`` + ``required``; a default is kept when it fits the type. A parameter is
required unless it is marked optional or has a non-empty default: the dataset's labels
were checked by executing them, and real records leave out parameters that have a
default but no ``, optional`` (record 8: ``light_travel_time(distance_in_light_years=25)``
without ``speed_of_light``, default 299792458).
An unknown type (e.g. ``strng``) rejects the tool. ``answers`` (``[{name, arguments}]``)
are the label of one [user query, assistant calls] conversation.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from looptool.core.types import Message, ToolSpec, ToolSpecError, normalize_schema
from looptool.seed.importers.base import (
    RecordError,
    ToolOutcome,
    as_list,
    convert,
    loose_value,
    object_schema,
    spec_of,
)
from looptool.seed.importers.chat import call_of

_GENERIC = re.compile(r"^\s*(\w+)\s*\[(.*)\]\s*$")


def is_xlam(record: Any) -> bool:
    return isinstance(record, dict) and "query" in record and "answers" in record


def _split_args(body: str) -> list[str]:
    """Top-level comma split of ``A, B[C, D]``."""
    out, depth, cur = [], 0, ""
    for ch in body:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*out, cur] if p.strip()]


def type_schema(text: str, where: str) -> dict:
    """A Python-style type annotation -> JSON schema (ToolSpecError if unknown)."""
    m = _GENERIC.match(text)
    if m is None:
        base = text.strip()
        if base.lower() == "any":
            return {}
        return normalize_schema({"type": base}, where)
    head, args = m.group(1).lower(), _split_args(m.group(2))
    if head in ("list", "sequence", "set"):
        return {"type": "array", **({"items": type_schema(args[0], where)} if args else {})}
    if head == "tuple":
        return {"type": "array", "prefixItems": [type_schema(a, where) for a in args]}
    if head in ("dict", "mapping"):
        return {"type": "object"}
    if head == "optional" and len(args) == 1:
        return type_schema(args[0], where)
    if head == "union":
        parts = [type_schema(a, where) for a in args]
        return {"anyOf": parts} if all(parts) else {}
    raise ToolSpecError(f"{where}.type: unknown type {text!r}")


def tool_spec(raw: Any, where: str) -> ToolSpec:
    """An xLAM tool (map-style parameters) as a ToolSpec; JSON-schema ones pass as is."""
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: expected an object, got {type(raw).__name__}")
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise RecordError(f"{where}: parameters must be an object")
    if params.get("type") in ("object", "dict") or "properties" in params:
        return spec_of(raw, where)
    name = raw.get("name")
    props: dict[str, dict] = {}
    required: list[str] = []
    try:
        for key, p in params.items():
            here = f"{where} {name!r}.parameters.{key}"
            if not isinstance(p, dict) or not isinstance(p.get("type", "any"), str):
                raise ToolSpecError(f"{here}: expected {{type, description}}")
            annot = p.get("type", "any").strip()
            optional = annot.lower().endswith(", optional")
            if optional:
                annot = annot[: -len(", optional")]
            schema = type_schema(annot, here)
            if p.get("description"):
                schema["description"] = str(p["description"])
            default = p.get("default")
            has_default = default not in (None, "")
            if has_default and jsonschema.Draft202012Validator(schema).is_valid(default):
                schema["default"] = default
            props[str(key)] = schema
            if not (optional or has_default):
                required.append(str(key))
    except ToolSpecError as exc:
        raise RecordError(str(exc)) from None
    body = object_schema(props, required)
    return spec_of(
        {"name": name, "description": raw.get("description", ""), "parameters": body}, where
    )


def parse(record: Any) -> tuple[list[ToolOutcome], list[Message] | None]:
    if not is_xlam(record):
        raise RecordError("not an xLAM record (needs 'query' and 'answers')")
    tools = as_list(record.get("tools", []), "tools")
    outcomes = convert([(f"#{k}", t) for k, t in enumerate(tools)], tool_spec)
    query = record["query"]
    if not isinstance(query, str) or not query.strip():
        raise RecordError("'query' must be a non-empty string")
    answers = as_list(record["answers"], "answers")
    if not answers:
        raise RecordError("'answers' is empty: the record has no label")
    calls = [call_of(loose_value(a, "answer"), f"answer {k}") for k, a in enumerate(answers)]
    messages = [Message(role="user", content=query), Message(role="assistant", tool_calls=calls)]
    return outcomes, messages
