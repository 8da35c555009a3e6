"""BFCL single-turn entries: load a data dir's questions and possible answers, and score a
prediction against an entry with the BFCL-mode ToolMatch (looptool.core.match_bfcl)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.match_bfcl import BfclDataError, BfclResult, CompiledAnswer, compile_answer
from looptool.eval.bfcl.data import NO_ANSWER_CATEGORIES, available_categories, read_jsonl
from looptool.eval.bfcl.decode import DecodeError, decode_result


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
