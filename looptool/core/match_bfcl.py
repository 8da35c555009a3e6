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
The per-parameter type and value rules live in :mod:`looptool.core.match_bfcl_values`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from looptool.core.match import max_bipartite_matching
from looptool.core.match_bfcl_values import TYPE_TABLES, Param

__all__ = [
    "BfclDataError",
    "BfclResult",
    "CompiledAnswer",
    "check_bfcl",
    "compile_answer",
    "contains_call",
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


def _language(category: str) -> str:
    if "javascript" in category:
        return "javascript"
    return "java" if "java" in category else "python"


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
        types = TYPE_TABLES[language]
        self.params: dict[str, Param] = {}
        for p, acc in answer.items():
            acc = acc if isinstance(acc, list) else [acc]
            if p in props:
                self.params[p] = Param(p, props[p], acc, types, language)
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
