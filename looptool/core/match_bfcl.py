"""BFCL-mode ToolMatch: judge decoded calls against BFCL possible-answer lists.

Follows the official AST checker (``bfcl_eval/eval_checker/ast_eval/ast_checker.py``) rule
by rule (DESIGN.md §4), with these deliberate differences:

- parallel categories use a proper one-to-one bipartite matching (upstream is greedy
  first-fit and rejects valid outputs when alternatives overlap);
- an int inside a list of floats is accepted like a top-level int for a float param;
- Java/JavaScript docs are checked against JSON-native values (a decoded ``<tool_call>``
  carries real numbers and booleans); a scalar written as Java/JS source text ("123L",
  "3.5f", "7n", "true") is converted first, collection source text is not parsed;
- malformed data (an answer naming a function absent from the docs, a non-list output)
  yields an invalid result with a reason instead of an exception.

Answers are compiled once (:func:`compile_answer`): string normalization, "variable"
types and required/optional sets are precomputed, so a check does only per-value work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from looptool.core.match import max_bipartite_matching

__all__ = [
    "BfclDataError",
    "BfclResult",
    "CompiledAnswer",
    "check_bfcl",
    "compile_answer",
    "contains_call",
    "standardize_string",
]


class BfclDataError(ValueError):
    """A BFCL function doc or possible answer too malformed to compile."""


@dataclass(frozen=True, slots=True)
class BfclResult:
    """Verdict of one BFCL check. ``error_type`` is "" when valid; ``detail`` says which
    call / answer, function, param and rule failed, plus a human ``message``."""

    valid: bool
    error_type: str = ""
    detail: dict = field(default_factory=dict)


VALID = BfclResult(True)

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
_TYPE_TABLES = {"python": _PYTHON_TYPES, "java": _JAVA_TYPES, "javascript": _JS_TYPES}


def _language(category: str) -> str:
    if "javascript" in category:
        return "javascript"
    return "java" if "java" in category else "python"


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


class _Param:
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


class _Call:
    """One expected call: the function doc joined with its possible answer."""

    __slots__ = ("name", "required", "params", "must", "doc_props", "answer_keys")

    def __init__(self, doc: dict, answer: dict, language: str, dot_to_underscore: bool):
        name = doc.get("name")
        if not isinstance(name, str):
            raise BfclDataError(f"function doc without a name: {str(doc)[:120]}")
        self.name = name.replace(".", "_") if dot_to_underscore else name
        params = doc.get("parameters") or {}
        props = (params.get("properties") or {}) if isinstance(params, dict) else None
        if not isinstance(props, dict):
            raise BfclDataError(f"function {name!r}: 'parameters.properties' must be an object")
        self.doc_props = props
        required = params.get("required") or ()
        if not isinstance(required, (list, tuple)):
            raise BfclDataError(f"function {name!r}: 'parameters.required' must be a list")
        self.required = tuple(required)
        self.answer_keys = answer
        types = _TYPE_TABLES[language]
        self.params: dict[str, _Param] = {}
        for p, acc in answer.items():
            acc = acc if isinstance(acc, list) else [acc]
            if p in props:
                self.params[p] = _Param(p, props[p], acc, types, language)
        self.must = tuple(
            p for p, acc in answer.items() if "" not in (acc if isinstance(acc, list) else [acc])
        )

    def check(self, call: Any, index: int) -> BfclResult:
        if type(call) is not dict or len(call) != 1:
            return _fail(
                "malformed_call",
                index,
                self.name,
                None,
                f"call {index} is not a one-key dict {{name: args}}",
            )
        ((name, args),) = call.items()
        if name != self.name:
            return BfclResult(False, "wrong_func_name", {
                "call": index, "func": self.name, "got": name,
                "message": f"call {index}: expected function {self.name!r}, got {name!r}",
            })  # fmt: skip
        if type(args) is not dict:
            return _fail(
                "malformed_call", index, name, None, f"call {index}: arguments are not an object"
            )
        for p in self.required:
            if p not in args:
                return _fail("missing_required", index, name, p, f"missing required param {p!r}")
        params = self.params
        for p, v in args.items():
            spec = params.get(p)
            if spec is None:
                why = (
                    "not in the function doc"
                    if p not in self.doc_props
                    else "not in the possible answer"
                )
                return _fail("unexpected_param", index, name, p, f"unexpected param {p!r} ({why})")
            err = spec.check(v)
            if err is not None:
                return _fail(err[0], index, name, p, err[1])
        for p in self.must:
            if p not in args:
                return _fail(
                    "missing_optional", index, name, p, f"param {p!r} left out but not optional"
                )
        return VALID


def _fail(error_type: str, index: int, func: str, param: str | None, message: str) -> BfclResult:
    return BfclResult(
        False, error_type, {"call": index, "func": func, "param": param, "message": message}
    )


def contains_call(output: Any) -> bool:
    """BFCL relevance rule: a well-formed, non-empty call list ([] and [{}] are no call)."""
    if type(output) is not list or not output:
        return False
    for item in output:
        if type(item) is not dict or len(item) != 1 or type(next(iter(item.values()))) is not dict:
            return False
    return not (len(output) == 1 and not output[0])


class CompiledAnswer:
    """A BFCL entry (docs + possible answer + category) ready for fast repeated checks."""

    __slots__ = ("category", "mode", "calls", "names", "n_expected")

    def __init__(
        self, category: str, mode: str, calls: list[_Call | None], names: list[str], n_expected: int
    ):
        self.category = category
        self.mode = mode
        self.calls = calls  # None where the answer names a function absent from the docs
        self.names = names
        self.n_expected = n_expected

    def check(self, output: Any) -> BfclResult:
        """Judge decoded model output ``[{"func_name": {"arg": value}}, ...]``."""
        mode = self.mode
        if mode == "irrelevance":
            if contains_call(output):
                return BfclResult(
                    False,
                    "irrelevance:called",
                    {
                        "n_calls": len(output),
                        "message": "a call was produced where none is relevant",
                    },
                )
            return VALID
        if mode == "relevance":
            if contains_call(output):
                return VALID
            return BfclResult(False, "relevance:no_call", {"message": "no call was produced"})
        if type(output) is not list:
            return BfclResult(
                False,
                "malformed_output",
                {"message": f"output must be a list of calls, got {type(output).__name__}"},
            )
        if len(output) != self.n_expected:
            return BfclResult(False, "wrong_count", {
                "expected": self.n_expected, "got": len(output),
                "message": f"expected {self.n_expected} call(s), got {len(output)}",
            })  # fmt: skip
        if mode == "parallel":
            return self._check_parallel(output)
        expected = self.calls[0]
        if expected is None:
            return _doc_not_found(0, self.names[0])
        return expected.check(output[0], 0)

    def _check_parallel(self, output: list) -> BfclResult:
        calls = self.calls
        n = len(calls)
        for i, c in enumerate(calls):
            if c is None:
                return _doc_not_found(i, self.names[i])
        # Upstream's greedy first-fit; when it succeeds it has found a perfect matching.
        taken = [False] * n
        for c in calls:
            for j in range(n):
                if not taken[j] and c.check(output[j], j).valid:
                    taken[j] = True
                    break
            else:
                break
        else:
            return VALID
        # Greedy got stuck (overlapping alternatives can fool it): real bipartite matching.
        results = [[c.check(output[j], j) for j in range(n)] for c in calls]
        match = max_bipartite_matching(
            [[j for j, r in enumerate(row) if r.valid] for row in results], n
        )
        if -1 not in match:
            return VALID
        i = match.index(-1)
        cands = [
            {
                "output": j,
                "error_type": r.error_type or "matched_elsewhere",
                "message": r.detail.get("message", ""),
            }
            for j, r in enumerate(results[i])
        ]
        return BfclResult(False, "parallel:no_match", {
            "answer": i, "func": calls[i].name, "candidates": cands,
            "message": f"no one-to-one match for expected call {i} ({calls[i].name})",
        })  # fmt: skip


def _doc_not_found(i: int, name: str) -> BfclResult:
    return BfclResult(
        False,
        "doc_not_found",
        {
            "answer": i,
            "func": name,
            "message": f"answer names {name!r}, absent from the function docs",
        },
    )


def _mode(category: str) -> str:
    if "irrelevance" in category:
        return "irrelevance"
    if "relevance" in category:
        return "relevance"
    if "parallel" in category:
        return "parallel"
    return "multiple" if "multiple" in category else "simple"


def compile_answer(
    functions: list[dict],
    possible_answer: list[dict] | None,
    category: str,
    *,
    dot_to_underscore: bool = False,
) -> CompiledAnswer:
    """Precompute everything a check needs; raise BfclDataError on unusable data."""
    mode = _mode(category)
    if mode in ("irrelevance", "relevance"):
        return CompiledAnswer(category, mode, [], [], 0)
    if not isinstance(functions, list) or not all(isinstance(f, dict) for f in functions):
        raise BfclDataError("function docs must be a list of objects")
    if not isinstance(possible_answer, list) or not possible_answer:
        raise BfclDataError(f"category {category!r} needs a non-empty possible-answer list")
    answers: list[tuple[str, dict]] = []
    for a in possible_answer:
        if not isinstance(a, dict) or len(a) != 1:
            raise BfclDataError(f"possible answer must be a one-key object, got {str(a)[:120]}")
        ((name, args),) = a.items()
        if not isinstance(args, dict):
            raise BfclDataError(f"possible answer for {name!r} must map params to value lists")
        answers.append((name, args))
    language = _language(category)
    names = [n for n, _ in answers]
    if mode == "simple":
        if not functions:
            raise BfclDataError("simple category entry without a function doc")
        # upstream: the expected name is the first doc's; the answer's name is not used
        call = _Call(functions[0], answers[0][1], language, dot_to_underscore)
        return CompiledAnswer(category, mode, [call], names[:1], 1)
    docs = {f.get("name"): f for f in functions}
    # "multiple": upstream counts every expected call but checks only the first one
    checked = answers[:1] if mode == "multiple" else answers
    calls = [
        None if (doc := docs.get(name)) is None else _Call(doc, args, language, dot_to_underscore)
        for name, args in checked
    ]
    return CompiledAnswer(category, mode, calls, names, len(answers))


def check_bfcl(
    functions: list[dict],
    output: Any,
    possible_answer: list[dict] | None,
    category: str,
    *,
    dot_to_underscore: bool = False,
) -> BfclResult:
    """One-shot BFCL check (compiles the answer each call; use compile_answer to reuse)."""
    return compile_answer(
        functions, possible_answer, category, dot_to_underscore=dot_to_underscore
    ).check(output)
