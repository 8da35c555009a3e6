"""BFCL predictions decoded into calls.

A prediction's ``result`` is a decoded call list ``[{"func": {"arg": value}}]``, a model
completion with ``<tool_call>`` blocks, or BFCL prompt-style text ``[f(a=1), g(b="x")]``
(parsed with :mod:`ast`, never evaluated).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from looptool.core.codec import parse_completion


class DecodeError(ValueError):
    """A prediction that cannot be decoded into calls (message says why)."""


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise DecodeError(f"unsupported callee {ast.unparse(node)!r}")


def _literal(node: ast.expr) -> Any:
    """A JSON value from a literal node; bare names become their text (BFCL's variables)."""
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, (str, int, float, bool)):
            return node.value
        raise DecodeError(f"unsupported constant {node.value!r}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal(node.operand)
        if isinstance(inner, bool) or not isinstance(inner, (int, float)):
            raise DecodeError(f"unary sign on a non-number: {ast.unparse(node)!r}")
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            key = None if k is None else _literal(k)
            if not isinstance(key, str):
                raise DecodeError("dict keys must be strings")
            out[key] = _literal(v)
        return out
    if isinstance(node, (ast.Name, ast.Attribute)):
        return _dotted(node)
    raise DecodeError(f"not a literal: {ast.unparse(node)!r}")


_FENCE_RE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.S)


def parse_python_call_parts(text: str) -> list[tuple[str, list, dict[str, Any]]]:
    """Parse ``[f(1, a=2), pkg.g(b="x")]`` (or a bare call) into (name, positional, keyword)
    triples of literal values, never evaluating anything. Raises DecodeError."""
    s = text.strip()
    m = _FENCE_RE.match(s)
    if m:
        s = m.group(1).strip()
    if not s:
        return []
    try:
        body = ast.parse(s, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise DecodeError(f"not Python call syntax: {getattr(exc, 'msg', exc)}") from None
    nodes = body.elts if isinstance(body, (ast.List, ast.Tuple)) else [body]
    calls: list[tuple[str, list, dict[str, Any]]] = []
    try:
        for i, node in enumerate(nodes):
            if not isinstance(node, ast.Call):
                raise DecodeError(f"item {i} is not a function call")
            args: dict[str, Any] = {}
            for kw in node.keywords:
                if kw.arg is None:
                    raise DecodeError(f"call {i}: **kwargs are not supported")
                if kw.arg in args:
                    raise DecodeError(f"call {i}: argument {kw.arg!r} repeated")
                args[kw.arg] = _literal(kw.value)
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise DecodeError(f"call {i}: *args are not supported")
            calls.append((_dotted(node.func), [_literal(a) for a in node.args], args))
    except RecursionError:
        raise DecodeError("expression too deeply nested") from None
    return calls


def parse_python_calls(text: str) -> list[dict]:
    """Parse ``[f(a=1), pkg.g(b="x")]`` (or a bare call) into BFCL decoded calls."""
    calls: list[dict] = []
    for i, (name, positional, args) in enumerate(parse_python_call_parts(text)):
        if positional:
            raise DecodeError(f"call {i}: positional arguments are not supported")
        calls.append({name: args})
    return calls


def decode_result(result: Any) -> list:
    """Model output -> BFCL decoded calls. Raises DecodeError when it is not decodable."""
    if isinstance(result, list):
        out = []
        for item in result:
            # accept {"name": .., "arguments": {..}} items too (two keys: never a BFCL call)
            if (
                isinstance(item, dict)
                and set(item) == {"name", "arguments"}
                and isinstance(item["name"], str)
            ):
                args = item["arguments"]
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except json.JSONDecodeError:
                        raise DecodeError(f"arguments of {item['name']!r} are not JSON") from None
                item = {item["name"]: args}
            out.append(item)
        return out
    if isinstance(result, str):
        if "<tool_call>" in result or "</tool_call>" in result:
            parsed = parse_completion(result)
            if parsed.error is not None:
                raise DecodeError(f"{parsed.error.kind}: {parsed.error.message}")
            return [{c.name: c.arguments} for c in parsed.calls]
        return parse_python_calls(result)
    raise DecodeError(f"result must be a list of calls or a string, got {type(result).__name__}")
