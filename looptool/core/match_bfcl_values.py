"""BFCL-mode value rules: one parameter's value against its possible answers.

String normalization (upstream's ``standardize_string``), the type tables of BFCL's
Python, Java and JavaScript dialects, Java/JS scalar source text ("12L", "2.5f", "7n"),
and a compiled parameter (:class:`Param`) whose ``check`` applies the official AST
checker's type, nested-type, "variable" and value rules. Calls and whole answers are
checked in :mod:`looptool.core.match_bfcl`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["standardize_string"]

# Matches upstream's regex class [ ,./-_*^] (literal space only), then lowercase, ' -> ".
_STD_TABLE = str.maketrans({c: None for c in " ,./-_*^"} | {"'": '"'})


def standardize_string(s: str) -> str:
    """BFCL string normalization, so "April 1, 2024" equals "april 1 2024"."""
    return s.translate(_STD_TABLE).lower()


def _std(v: Any) -> Any:
    return v.translate(_STD_TABLE).lower() if type(v) is str else v


_PYTHON_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "any": str,
    # JSON-schema spellings, for docs that are not in BFCL's dialect
    "number": float, "object": dict, "list": list, "bool": bool,
}  # fmt: skip
_JAVA_TYPES: dict[str, type] = {
    "byte": int, "short": int, "integer": int, "long": int, "float": float, "double": float,
    "boolean": bool, "char": str, "String": str, "any": str, "Array": list, "ArrayList": list,
    "Queue": list, "Stack": list, "Set": list, "HashMap": dict, "Hashtable": dict,
}  # fmt: skip
_JS_TYPES: dict[str, type] = {
    "String": str, "integer": int, "Bigint": int, "float": float, "Boolean": bool,
    "dict": dict, "array": list, "any": str,
}  # fmt: skip
TYPE_TABLES = {"python": _PYTHON_TYPES, "java": _JAVA_TYPES, "javascript": _JS_TYPES}


_INT_SOURCE = re.compile(r"-?\d+[lLn]?")
_FLOAT_SOURCE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[fFdD]?")


def _source_scalar(value: str, py_type: type) -> Any:
    """Java/JS scalar source text -> value ("12L" -> 12, "2.5f" -> 2.5, "7n" -> 7)."""
    s = value.strip()
    if py_type is bool:
        return {"true": True, "false": False}.get(s, value)
    if py_type is int and _INT_SOURCE.fullmatch(s):
        return int(s.rstrip("lLn"))
    if py_type is float and _FLOAT_SOURCE.fullmatch(s):
        return float(s.rstrip("fFdD"))
    return value


# value-check kinds, chosen once per param at compile time
_K_OTHER, _K_STR, _K_LIST, _K_DICT, _K_LIST_DICT, _K_UNTYPED = range(6)


class _DictAlt:
    """One acceptable dict: per key the normalized acceptable values; keys that must appear."""

    __slots__ = ("keys", "must")

    def __init__(self, alt: dict):
        self.keys: dict[str, list] = {}
        must = []
        for k, vals in alt.items():
            vals = vals if isinstance(vals, list) else [vals]
            self.keys[k] = [_std(v) for v in vals]
            if "" not in vals:
                must.append(k)
        self.must = tuple(must)

    def check(self, value: dict) -> tuple[str, str] | None:
        """None when ``value`` fits, else (error_type, message)."""
        if type(value) is not dict:
            return "value_error:dict", f"expected an object, got {value!r}"
        keys = self.keys
        for k, v in value.items():
            acc = keys.get(k)
            if acc is None:
                return "value_error:dict_key", f"unexpected dict key {k!r}"
            if _std(v) not in acc:
                return "value_error:dict_value", f"dict key {k!r}: {v!r} not in {acc!r}"
        for k in self.must:
            if k not in value:
                return "value_error:dict_key", f"missing dict key {k!r}"
        return None


class Param:
    __slots__ = (
        "name", "doc_type", "acceptable", "py_type", "nested", "var_type", "kind",
        "alts", "nested_alts", "source_text",
    )  # fmt: skip

    def __init__(self, name: str, doc: dict, acceptable: list, types: dict, language: str):
        self.name = name
        self.acceptable = acceptable
        doc_type = doc.get("type") if isinstance(doc, dict) else None
        self.doc_type = doc_type if isinstance(doc_type, str) else None
        py_type = types.get(self.doc_type) if self.doc_type else None
        self.py_type = py_type
        self.nested: type | None = None
        if py_type is list:
            items = doc.get("items")
            item_type = items.get("type") if isinstance(items, dict) else None
            if isinstance(item_type, str):
                self.nested = types.get(item_type)
        self.source_text = language != "python" and py_type in (int, float, bool)
        first_type = next((type(a) for a in acceptable if a != ""), None)
        # "variable" rule: the answer holds e.g. a variable name where the doc says dict
        self.var_type = first_type if first_type is not None and first_type is not py_type else None
        # nested type check: per alternative, (is a list, that alternative's variable type)
        self.nested_alts: list[tuple[bool, type | None]] = []
        if self.nested is not None:
            for alt in acceptable:
                if isinstance(alt, list):
                    ft = next((type(x) for x in alt if x != ""), None)
                    self.nested_alts.append((True, ft if ft is not self.nested else None))
                else:
                    self.nested_alts.append((False, None))
        self.alts: Any = acceptable
        if py_type is None:
            self.kind = _K_UNTYPED
            self.alts = [[_std(x) for x in a] if type(a) is list else _std(a) for a in acceptable]
        elif self.var_type is not None:
            self.kind = _K_OTHER
        elif py_type is dict:
            self.kind = _K_DICT
            self.alts = [_DictAlt(a) for a in acceptable if isinstance(a, dict)]
        elif py_type is list and self.nested is dict:
            self.kind = _K_LIST_DICT
            alts = []
            for a in acceptable:
                if a == "":
                    alts.append([])  # upstream: len("") == 0, so "" accepts []
                elif isinstance(a, list):
                    alts.append([_DictAlt(d) if isinstance(d, dict) else None for d in a])
            self.alts = alts
        elif py_type is str:
            self.kind = _K_STR
            self.alts = frozenset(
                a.translate(_STD_TABLE).lower() for a in acceptable if type(a) is str
            )
        elif py_type is list:
            self.kind = _K_LIST
            self.alts = [
                [] if a == "" else [_std(x) for x in a]
                for a in acceptable
                if a == "" or isinstance(a, list)
            ]
        else:
            self.kind = _K_OTHER

    def check(self, value: Any) -> tuple[str, str] | None:
        """None when ``value`` is acceptable, else (error_type, message)."""
        py_type = self.py_type
        if self.source_text and type(value) is str:
            value = _source_scalar(value, py_type)
        vt = type(value)
        if py_type is float and vt is int:
            value = float(value)
            vt = float
        if py_type is not None and vt is not py_type and vt is not self.var_type:
            return (
                "type_error:simple",
                f"param {self.name!r}: expected type {self.doc_type}, got {vt.__name__} ({value!r})",
            )
        if self.nested is not None and vt is list:
            if self.nested is float and int in map(type, value):
                value = [float(x) if type(x) is int else x for x in value]
            nested = self.nested
            for is_list, alt_var in self.nested_alts:
                if not is_list or all(type(x) is nested or type(x) is alt_var for x in value):
                    break
            else:
                return (
                    "type_error:nested",
                    f"param {self.name!r}: expected {self.doc_type} of {nested.__name__}, got {value!r}",
                )
        kind = self.kind
        if kind == _K_STR:
            if value.translate(_STD_TABLE).lower() in self.alts:
                return None
            return (
                "value_error:string",
                f"param {self.name!r}: {value!r} not in {self.acceptable!r}",
            )
        if kind == _K_OTHER:
            if value in self.acceptable:
                return None
            return (
                "value_error:others",
                f"param {self.name!r}: {value!r} not in {self.acceptable!r}",
            )
        if kind == _K_LIST:
            if [_std(x) for x in value] in self.alts:
                return None
            return "value_error:list", f"param {self.name!r}: {value!r} not in {self.acceptable!r}"
        if kind == _K_DICT:
            err = ("value_error:dict", f"param {self.name!r}: no acceptable dict given")
            for alt in self.alts:
                e = alt.check(value)
                if e is None:
                    return None
                err = e
            return err[0], f"param {self.name!r}: {err[1]}"
        if kind == _K_LIST_DICT:
            err = ("value_error:list_dict_count", "no acceptable list of dicts")
            for alt in self.alts:
                if len(alt) != len(value):
                    err = (
                        "value_error:list_dict_count",
                        f"expected {len(alt)} dicts, got {len(value)}",
                    )
                    continue
                for i, (d_alt, d) in enumerate(zip(alt, value, strict=True)):
                    e = ("value_error:dict", "bad answer") if d_alt is None else d_alt.check(d)
                    if e is not None:
                        err = (e[0], f"item {i}: {e[1]}")
                        break
                else:
                    return None
            return err[0], f"param {self.name!r}: {err[1]}"
        # untyped doc: compare by the value's own kind
        if vt is str:
            ok = value.translate(_STD_TABLE).lower() in self.alts
        elif vt is list:
            ok = [_std(x) for x in value] in self.alts
        else:
            ok = value in self.acceptable
        if ok:
            return None
        return "value_error:others", f"param {self.name!r}: {value!r} not in {self.acceptable!r}"
