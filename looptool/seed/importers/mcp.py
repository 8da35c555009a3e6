"""MCP (Model Context Protocol) ``tools/list`` results: a server's tools as seed APIs.

A record is one of:

- a JSON-RPC response ``{"jsonrpc": "2.0", "id": ..., "result": {"tools": [...],
  "nextCursor"?}}`` (several pages: JSON lines or a JSON list of responses);
- a bare result ``{"tools": [...], "nextCursor"?}`` (read as its list of tools);
- one MCP tool ``{"name", "title"?, "description"?, "inputSchema", "outputSchema"?,
  "annotations"?}``.

A tool becomes a ToolSpec with ``inputSchema`` as its parameters and ``description``
(or ``title``) as its description; ``outputSchema`` is kept as the API's ``returns``.
Local ``$ref`` pointers into ``$defs`` / ``definitions`` (pydantic, hence FastMCP, writes
them for model-typed parameters) are inlined. A tool whose schema cannot be represented
is a reject with the reason: input not an object schema, a recursive or remote ``$ref``,
an unknown type, an invalid JSON schema. A JSON-RPC error response is a reject too.
"""

from __future__ import annotations

import copy
from typing import Any

from looptool.core.types import ToolSpec
from looptool.seed.importers.base import RecordError, ToolOutcome, spec_of

_DEFS = ("$defs", "definitions")


def is_mcp_tool(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("name"), str)
        and ("inputSchema" in record)
    )


def is_mcp_result(record: Any) -> bool:
    """A JSON-RPC response (result or error) of ``tools/list``, or its bare result."""
    if not isinstance(record, dict):
        return False
    if "jsonrpc" in record and ("result" in record or "error" in record):
        return True
    result = record.get("result", record)
    return (
        isinstance(result, dict)
        and isinstance(result.get("tools"), list)
        and all(is_mcp_tool(t) for t in result["tools"][:3])
        and bool(result["tools"])
    )


def is_mcp(record: Any) -> bool:
    return is_mcp_tool(record) or is_mcp_result(record)


def _inline_refs(node: Any, defs: dict, where: str, active: tuple[str, ...] = ()) -> Any:
    """``node`` with every local ``$ref`` replaced by its definition (RecordError when a
    reference is remote, unknown or recursive)."""
    if isinstance(node, list):
        return [_inline_refs(v, defs, where, active) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        prefix = next((f"#/{d}/" for d in _DEFS if ref.startswith(f"#/{d}/")), None)
        if prefix is None:
            raise RecordError(f"{where}: $ref {ref!r} is not a local definition; cannot inline it")
        name = ref[len(prefix) :]
        if name not in defs:
            raise RecordError(f"{where}: $ref {ref!r} names no definition")
        if name in active:
            raise RecordError(
                f"{where}: recursive $ref {ref!r} (a tool schema must be finite to be represented)"
            )
        target = _inline_refs(copy.deepcopy(defs[name]), defs, where, (*active, name))
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_inline_refs(rest, defs, where, active)}
    return {k: _inline_refs(v, defs, where, active) for k, v in node.items() if k not in _DEFS}


def _schema(raw: Any, what: str, name: str) -> dict:
    if not isinstance(raw, dict):
        raise RecordError(f"tool {name!r}: {what} must be a JSON-schema object")
    defs: dict = {}
    for d in _DEFS:
        if isinstance(raw.get(d), dict):
            defs.update(raw[d])
    return _inline_refs(raw, defs, f"tool {name!r}: {what}")


def tool_spec(tool: Any, where: str = "tool") -> tuple[ToolSpec, dict | None]:
    """One MCP tool -> (ToolSpec, output schema or None); RecordError with the reason."""
    if not is_mcp_tool(tool):
        raise RecordError(f"{where}: not an MCP tool (needs name and inputSchema)")
    name = tool["name"]
    params = _schema(tool["inputSchema"], "inputSchema", name)
    if params.get("type", "object") != "object":
        raise RecordError(
            f"tool {name!r}: inputSchema has type {params.get('type')!r}; MCP and function "
            "calling need an object schema"
        )
    desc = tool.get("description") or tool.get("title") or ""
    spec = spec_of({"name": name, "description": desc, "parameters": params}, where)
    out = tool.get("outputSchema")
    returns = _schema(out, "outputSchema", name) if out is not None else None
    return spec, returns


def parse(record: Any) -> tuple[list[ToolOutcome], None]:
    """A tools/list response or one MCP tool -> (ref suffix, (spec, returns) or error)."""
    if isinstance(record, dict) and "error" in record and "result" not in record:
        err = record["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        raise RecordError(f"the server answered an error, not a tools list: {msg}")
    if is_mcp_tool(record):
        tools, single = [record], True
    else:
        result = record.get("result", record) if isinstance(record, dict) else None
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            raise RecordError("expected a tools/list result {tools: [...]}")
        tools, single = result["tools"], False
    out: list[ToolOutcome] = []
    for k, tool in enumerate(tools):
        suffix = "" if single else f"#{k}"
        try:
            out.append((suffix, tool_spec(tool, f"tool {k}")))  # type: ignore[arg-type]
        except RecordError as exc:
            out.append((suffix, exc))
    return out, None
