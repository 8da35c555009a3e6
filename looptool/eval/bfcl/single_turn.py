"""BFCL evaluation: load a BFCL data dir, decode predictions, score them per category.

A data dir holds ``BFCL_v4_<category>.json`` question files (JSON lines with ``id`` and
``function``) and ``possible_answer/BFCL_v4_<category>.json`` beside them. Predictions are
JSON lines ``{"id": ..., "result": ...}``; ``result`` is a decoded call list
``[{"func": {"arg": value}}]``, a model completion with ``<tool_call>`` blocks, or BFCL
prompt-style text ``[f(a=1), g(b="x")]`` (parsed with :mod:`ast`, never evaluated).
Bad lines and unknown ids become invalid rows with their line number, never exceptions.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from looptool.core.codec import parse_completion
from looptool.core.match_bfcl import BfclDataError, BfclResult, CompiledAnswer, compile_answer

SCORED_CATEGORIES: tuple[str, ...] = (
    "simple_python", "multiple", "parallel", "parallel_multiple",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
)  # fmt: skip
EXTRA_CATEGORIES: tuple[str, ...] = ("simple_java", "simple_javascript")
NO_ANSWER_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance", "live_relevance")
ALL_CATEGORIES: tuple[str, ...] = SCORED_CATEGORIES + EXTRA_CATEGORIES + NO_ANSWER_CATEGORIES
# Played against executable environments (looptool.eval.bfcl.multi_turn); their data and
# environments come from the installed bfcl-eval, not from a data dir.
MULTI_TURN_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context",
)  # fmt: skip

# The repo's vendored copy (data/bfcl beside the package), used when --data is not given.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "data" / "bfcl"

_ID_RE = re.compile(r"^(?P<cat>[a-z][a-z_]*?)_(?P<idx>\d+(?:-\d+)*)$")
_LEGACY = {"simple": "simple_python"}  # BFCL v3 called simple_python "simple"


def category_of(entry_id: Any) -> str | None:
    """Category of a BFCL id (``live_multiple_862-181-3`` -> ``live_multiple``), else None."""
    if not isinstance(entry_id, str):
        return None
    m = _ID_RE.match(entry_id)
    if m is None:
        return None
    cat = _LEGACY.get(m["cat"], m["cat"])
    return cat if cat in ALL_CATEGORIES or cat in MULTI_TURN_CATEGORIES else None


@dataclass
class BfclEntry:
    """One BFCL question with its docs and (for scored categories) its possible answer."""

    id: str
    category: str
    functions: list[dict]
    ground_truth: list[dict] | None
    question: Any = None
    _compiled: dict[bool, CompiledAnswer] = field(default_factory=dict, repr=False)

    def compiled(self, dot_to_underscore: bool = False) -> CompiledAnswer:
        """The answer compiled for fast checks (cached per entry and option)."""
        c = self._compiled.get(dot_to_underscore)
        if c is None:
            c = self._compiled[dot_to_underscore] = compile_answer(
                self.functions,
                self.ground_truth,
                self.category,
                dot_to_underscore=dot_to_underscore,
            )
        return c

    def score(self, result: Any, dot_to_underscore: bool = False) -> BfclResult:
        """:func:`score_entry` of this entry."""
        return score_entry(self, result, dot_to_underscore)


def read_jsonl(path: Path, key: str = "id") -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-empty line of a BFCL data file; each object must
    hold a string ``key``. Raises BfclDataError naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BfclDataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
                raise BfclDataError(f"{path}:{lineno}: expected an object with a string {key!r}")
            yield lineno, obj


def available_categories(data_dir: str | Path) -> list[str]:
    """Known categories that have a question file in ``data_dir``."""
    d = Path(data_dir)
    return [c for c in ALL_CATEGORIES if (d / f"BFCL_v4_{c}.json").is_file()]


def load_bfcl(
    data_dir: str | Path, categories: Iterable[str] | None = None
) -> dict[str, BfclEntry]:
    """Load question + possible-answer files (all known categories present, or ``categories``).

    Raises FileNotFoundError / BfclDataError naming the file and line on bad data.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"BFCL data dir not found: {d}")
    present = available_categories(d)
    if not present:
        raise BfclDataError(f"no BFCL_v4_<category>.json question files in {d}")
    wanted = present if categories is None else [c for c in categories if c in present]
    entries: dict[str, BfclEntry] = {}
    for cat in wanted:
        qpath = d / f"BFCL_v4_{cat}.json"
        answers: dict[str, list] = {}
        if cat not in NO_ANSWER_CATEGORIES:
            apath = d / "possible_answer" / f"BFCL_v4_{cat}.json"
            if not apath.is_file():
                raise BfclDataError(f"{qpath}: possible-answer file missing: {apath}")
            for lineno, obj in read_jsonl(apath):
                gt = obj.get("ground_truth")
                if not isinstance(gt, list):
                    raise BfclDataError(f"{apath}:{lineno}: 'ground_truth' must be a list")
                answers[obj["id"]] = gt
        for lineno, obj in read_jsonl(qpath):
            eid = obj["id"]
            funcs = obj.get("function")
            if not isinstance(funcs, list):
                raise BfclDataError(f"{qpath}:{lineno}: 'function' must be a list of docs")
            gt = answers.get(eid)
            if cat not in NO_ANSWER_CATEGORIES and gt is None:
                raise BfclDataError(f"{qpath}:{lineno}: no possible answer for id {eid!r}")
            entries[eid] = BfclEntry(eid, cat, funcs, gt, obj.get("question"))
    return entries


# ---------------------------------------------------------------- prediction decoding


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


# ---------------------------------------------------------------- scoring


def score_entry(entry: BfclEntry, result: Any, dot_to_underscore: bool = False) -> BfclResult:
    """Decode ``result`` and check it; a decode failure is "no call" for (ir)relevance."""
    compiled = entry.compiled(dot_to_underscore)
    try:
        output = decode_result(result)
    except DecodeError as exc:
        if compiled.mode in ("irrelevance", "relevance"):
            return compiled.check([])
        return BfclResult(False, "decode_error", {"message": str(exc)})
    return compiled.check(output)


def first_acceptable_output(entry: BfclEntry) -> list[dict]:
    """The reference output: each answer param at its first acceptable value.

    Params whose first acceptable value is "" (optional) are left out, unless the doc
    requires them, then the first non-"" value is used. Dict answers (and lists of dict
    answers) are materialized the same way, one level down.
    """

    def first(vals: Any) -> Any:
        return vals[0] if isinstance(vals, list) and vals else vals

    def one(alt: dict) -> dict:
        return {k: first(v) for k, v in alt.items() if v != [] and first(v) != ""}

    docs = {f.get("name"): f for f in entry.functions}
    out = []
    for call in entry.ground_truth or []:
        ((name, args),) = call.items()
        required = set(docs.get(name, {}).get("parameters", {}).get("required", []))
        built = {}
        for p, vals in args.items():
            pool = [v for v in vals if v != ""] if p in required else vals[:1]
            if not pool or pool[0] == "":
                continue
            v = pool[0]
            if isinstance(v, dict):
                v = one(v)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                v = [one(x) for x in v]
            built[p] = v
        out.append({name: built})
    return out


@dataclass
class EvalReport:
    """Per-prediction rows, line-numbered problems and per-category accuracy."""

    rows: list[dict]  # {"id", "valid", "error_type" (None when valid)} in prediction order
    categories: list[str | None]  # category per row (None: unknown id / malformed line)
    problems: list[tuple[int, str]]  # (line number, message)
    data_counts: dict[str, int]  # entries per category in the data dir

    def accuracy(self) -> pl.DataFrame:
        """category, data, predicted, valid, accuracy; plus ``unmatched`` and ``overall``."""
        df = pl.DataFrame(
            {
                "category": [c or "unmatched" for c in self.categories],
                "valid": [r["valid"] for r in self.rows],
            },
            schema={"category": pl.Utf8, "valid": pl.Boolean},
        )
        agg = df.group_by("category").agg(
            pl.len().cast(pl.Int64).alias("predicted"),
            pl.col("valid").sum().cast(pl.Int64).alias("valid"),
        )
        order = {c: i for i, c in enumerate((*ALL_CATEGORIES, *MULTI_TURN_CATEGORIES, "unmatched"))}
        agg = agg.with_columns(
            pl.col("category")
            .replace_strict(self.data_counts, default=None, return_dtype=pl.Int64)
            .alias("data"),
            pl.col("category")
            .replace_strict(order, default=len(order), return_dtype=pl.Int64)
            .alias("_o"),
        ).sort("_o")
        total = pl.DataFrame(
            {
                "category": ["overall"],
                "predicted": [len(self.rows)],
                "valid": [sum(r["valid"] for r in self.rows)],
                "data": [None],
            },
            schema={
                "category": pl.Utf8,
                "predicted": pl.Int64,
                "valid": pl.Int64,
                "data": pl.Int64,
            },
        )
        out = pl.concat([agg.drop("_o"), total], how="diagonal")
        return out.select(
            "category",
            "data",
            "predicted",
            "valid",
            pl.when(pl.col("predicted") > 0)
            .then(pl.col("valid") / pl.col("predicted"))
            .alias("accuracy"),
        )

    def table(self) -> str:
        """Plain-text accuracy table."""
        lines = [f"{'category':<24} {'data':>6} {'pred':>6} {'valid':>6} {'accuracy':>9}"]
        for r in self.accuracy().iter_rows(named=True):
            data = "" if r["data"] is None else str(r["data"])
            acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
            lines.append(
                f"{r['category']:<24} {data:>6} {r['predicted']:>6} {r['valid']:>6} {acc:>9}"
            )
        return "\n".join(lines)


def read_predictions(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (line number, parsed JSON or None, error or None) per non-empty line."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except (json.JSONDecodeError, RecursionError) as exc:
                yield lineno, None, f"invalid JSON ({getattr(exc, 'msg', 'too deeply nested')})"


class ScorableEntry(Protocol):
    """A BFCL entry of any kind: single-turn (BfclEntry) or multi-turn."""

    category: str

    def score(self, result: Any, dot_to_underscore: bool = False) -> BfclResult: ...


def evaluate(
    data: Mapping[str, ScorableEntry],
    records: Iterable[tuple[int, Any, str | None]],
    *,
    dot_to_underscore: bool = False,
    data_counts: dict[str, int] | None = None,
) -> EvalReport:
    """Score prediction records (as from :func:`read_predictions`) against loaded data."""
    rows: list[dict] = []
    cats: list[str | None] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}

    def bad(lineno: int, eid: Any, error_type: str, message: str) -> None:
        rows.append(
            {"id": eid if isinstance(eid, str) else None, "valid": False, "error_type": error_type}
        )
        cats.append(None)
        problems.append((lineno, message))

    for lineno, obj, err in records:
        if err is not None:
            bad(lineno, None, "malformed_line", err)
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or "result" not in obj:
            bad(
                lineno, None, "malformed_line", 'expected an object {"id": <string>, "result": ...}'
            )
            continue
        eid = obj["id"]
        entry = data.get(eid)
        if entry is None:
            bad(lineno, eid, "unknown_id", f"id {eid!r} is not in the BFCL data")
            continue
        if eid in seen:
            bad(lineno, eid, "duplicate_id", f"id {eid!r} already predicted on line {seen[eid]}")
            continue
        seen[eid] = lineno
        try:
            res = entry.score(obj["result"], dot_to_underscore)
        except BfclDataError as exc:
            problems.append((lineno, f"id {eid!r}: unusable BFCL entry: {exc}"))
            res = BfclResult(False, "bad_entry", {"message": str(exc)})
        rows.append({"id": eid, "valid": res.valid, "error_type": res.error_type or None})
        cats.append(entry.category)
    if data_counts is None:
        data_counts = {}
        for e in data.values():
            data_counts[e.category] = data_counts.get(e.category, 0) + 1
    return EvalReport(rows, cats, problems, data_counts)


def evaluate_file(
    data_dir: str | Path, predictions: str | Path, *, dot_to_underscore: bool = False
) -> EvalReport:
    """Load only the categories the predictions need, then score every line. Multi-turn
    ids are scored against the installed bfcl-eval data (official checker)."""
    records = list(read_predictions(predictions))
    wanted = {
        category_of(obj.get("id"))
        for _, obj, err in records
        if err is None and isinstance(obj, dict)
    }
    data: dict[str, ScorableEntry] = dict(
        load_bfcl(data_dir, [c for c in ALL_CATEGORIES if c in wanted])
    )
    multi = [c for c in MULTI_TURN_CATEGORIES if c in wanted]
    if multi:
        # imported here: bfcl_multiturn builds on this module
        from looptool.eval.bfcl.multi_turn import load_multi_turn

        data.update(load_multi_turn(multi))
    counts: dict[str, int] = {}
    for e in data.values():
        counts[e.category] = counts.get(e.category, 0) + 1
    return evaluate(data, records, dot_to_underscore=dot_to_underscore, data_counts=counts)
