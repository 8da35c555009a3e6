"""The policy on BFCL: prompt, decode greedily, score. Single-turn categories are scored
by the project's BFCL evaluator (looptool.eval.bfcl.single_turn, BFCL-mode ToolMatch),
multi-turn ones are played against the official environments and scored by the official
checker (looptool.eval.bfcl.multi_turn).

Each entry is prompted like a training sample: the policy system prompt, the entry's
question as the conversation, its function docs as the tool list (normalized to JSON
schema when possible, else passed through as written). A per-category subset
(seeded, identical every iteration) keeps CPU runs short.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import polars as pl
import pyarrow as pa
from tqdm.auto import tqdm

from looptool.core.codec import parse_completion
from looptool.core.match_bfcl import BfclDataError
from looptool.core.prompting import policy_messages, policy_system
from looptool.core.tables import EVAL_ITEMS, rows_to_table
from looptool.core.types import Label, Message, Sample, ToolSpec, ToolSpecError
from looptool.engines.base import ChatRequest, Engine, SamplingParams
from looptool.eval.bfcl.data import ALL_CATEGORIES, MULTI_TURN_CATEGORIES, available_categories
from looptool.eval.bfcl.multi_turn import (
    MultiTurnEntry,
    load_multi_turn,
    play_multi_turn,
    score_multi_turn,
)
from looptool.eval.bfcl.scores import v3_columns, v4_columns
from looptool.eval.bfcl.single_turn import BfclEntry, load_bfcl, score_entry
from looptool.eval.policy import FailureBudget, generate_answers
from looptool.params.evaluation import MAX_ENGINE_FAILURE_SHARE

E = TypeVar("E", BfclEntry, MultiTurnEntry)


ENTRY_ORDER: tuple[str, ...] = (*ALL_CATEGORIES, *MULTI_TURN_CATEGORIES)


def select_entries(entries: Mapping[str, E], per_category: int | None, seed: int) -> list[E]:
    """Up to ``per_category`` entries of each category, a seeded sample in id order."""
    by_cat: dict[str, list[str]] = {}
    for eid, e in entries.items():
        by_cat.setdefault(e.category, []).append(eid)
    chosen: list[E] = []
    for cat in sorted(by_cat, key=ENTRY_ORDER.index):
        ids = sorted(by_cat[cat])
        if per_category is not None and len(ids) > per_category:
            ids = sorted(random.Random(f"{seed}:{cat}").sample(ids, per_category))
        chosen += [entries[i] for i in ids]
    return chosen


def bfcl_tools(functions: list[dict], where: str) -> list[dict]:
    """BFCL function docs as the OpenAI tool list (normalized to JSON schema when possible)."""
    tools: list[dict] = []
    for i, fn in enumerate(functions):
        try:
            tools.append(ToolSpec.from_any(fn, where=f"{where} function {i}").to_openai())
        except ToolSpecError:
            # a doc our normalizer rejects is still what BFCL shows the model
            tools.append({"type": "function", "function": fn})
    return tools


def entry_prompt(entry: BfclEntry, date: str) -> tuple[list[dict], list[dict]]:
    """(messages, tools) for one BFCL entry. Raises ValueError on a malformed question."""
    turns = entry.question or []
    raw_msgs = [m for turn in turns for m in (turn if isinstance(turn, list) else [turn])]
    context = [Message.model_validate(m) for m in raw_msgs]
    sample = Sample(tools=[], context=context, label=Label(text=""))
    return policy_messages(sample, date), bfcl_tools(entry.functions, entry.id)


def _check_categories(categories: list[str] | None, data_dir: str | Path) -> tuple[list, list]:
    """(single-turn, multi-turn) categories to run; None = every one available."""
    present = available_categories(data_dir) if Path(data_dir).is_dir() else []
    if categories is None:
        return present, list(MULTI_TURN_CATEGORIES)
    unknown = [c for c in categories if c not in ENTRY_ORDER]
    if unknown:
        raise ValueError(
            f"eval.bfcl_categories: unknown {unknown}; known: {', '.join(ENTRY_ORDER)}"
        )
    single = [c for c in categories if c in ALL_CATEGORIES]
    missing = [c for c in single if c not in present]
    if missing:
        raise FileNotFoundError(f"{data_dir}: no BFCL_v4_<category>.json for {missing}")
    return single, [c for c in categories if c in MULTI_TURN_CATEGORIES]


def _single_turn_rows(
    engine: Engine, entries: list[BfclEntry], *, date: str, sampling: SamplingParams,
    thinking: bool, dot_to_underscore: bool, bar: tqdm, max_failure_share: float,
) -> list[dict]:  # fmt: skip
    rows: list[dict] = []
    todo: list[tuple[int, BfclEntry]] = []
    requests: list[ChatRequest] = []
    for e in entries:
        base = {"item_id": e.id, "category": e.category}
        try:
            messages, tools = entry_prompt(e, date)
        except ValueError as exc:  # pydantic ValidationError included
            rows.append({**base, "ok": False, "reason": "bad_entry", "raw_text": str(exc)[:500]})
            bar.update()
            continue
        todo.append((len(rows), e))
        rows.append(base)
        requests.append(
            ChatRequest(
                messages=messages,
                tools=tools,
                params=sampling,
                chat_template_kwargs={"enable_thinking": thinking},
            )  # fmt: skip
        )
    chunk = max(1, engine.batch_size) * 4
    answers: list[tuple[str | None, str | None]] = []
    budget = FailureBudget("BFCL single-turn", len(requests), engine, max_share=max_failure_share)
    for start in range(0, len(requests), chunk):
        part = requests[start : start + chunk]
        answers += generate_answers(engine, part, chunk, budget)
        bar.update(len(part))
    for (i, e), (text, error) in zip(todo, answers, strict=True):
        if text is None:
            rows[i].update(ok=False, reason="engine_error", raw_text=error)
            continue
        rows[i]["result"] = text
        parsed = parse_completion(text)
        # A clean parse is scored as the calls it holds (none = no call); a broken one is
        # handed over as text so the evaluator records the decode error.
        result = text if parsed.error else [c.to_json() for c in parsed.calls]
        try:
            res = score_entry(e, result, dot_to_underscore)
        except BfclDataError as exc:
            rows[i].update(ok=False, reason="bad_entry", raw_text=f"{exc}\n---\n{text}")
            continue
        rows[i].update(ok=res.valid, reason="valid" if res.valid else res.error_type, raw_text=text)
    return rows


def _multi_turn_rows(
    engine: Engine, entries: list[MultiTurnEntry], *, date: str, sampling: SamplingParams,
    thinking: bool, bar: tqdm, max_failure_share: float,
) -> list[dict]:  # fmt: skip
    budget = FailureBudget(
        "BFCL multi-turn", len(entries), engine, max_share=max_failure_share,
        unit="conversations",
    )  # fmt: skip
    runs = play_multi_turn(
        engine, entries, system=[{"role": "system", "content": policy_system(date)}], to_tools=bfcl_tools,
        params=sampling, thinking=thinking, on_done=lambda _run: bar.update(), budget=budget,
    )  # fmt: skip
    rows: list[dict] = []
    for run in runs:
        verdict = score_multi_turn(run.entry, run.result)
        reason = "valid" if verdict.valid else (verdict.error_type or "invalid")
        if run.stop == "engine_error":
            reason = "engine_error"
        rows.append(
            {
                "item_id": run.entry.id,
                "category": run.entry.category,
                "ok": verdict.valid,
                "reason": reason,
                "raw_text": json.dumps(run.log, ensure_ascii=False),
                "result": run.result,
                "message": verdict.message,
                "refused": run.refused,
                "stop": run.stop,
            }
        )
    return rows


def run_bfcl(
    engine: Engine,
    data_dir: str | Path,
    *,
    date: str,
    categories: list[str] | None = None,
    per_category: int | None = 20,
    multi_turn_per_category: int | None = None,
    seed: int = 0,
    max_tokens: int = 256,
    thinking: bool = False,
    dot_to_underscore: bool = False,
    progress: bool = False,
    max_engine_failure_share: float = MAX_ENGINE_FAILURE_SHARE,
) -> list[dict]:
    """Decode and score a per-category subset of BFCL, single- and multi-turn.

    One row per entry: item_id, category, ok, reason ("valid" or the failure), raw_text
    (the completion; for multi-turn the per-step log as JSON) and ``result`` in BFCL's
    result format. Multi-turn categories come from the installed bfcl-eval data. A
    request the engine fails is an ``engine_error`` row; more than
    ``max_engine_failure_share`` of the single-turn entries, or of the multi-turn
    conversations, raise :class:`~looptool.eval.policy.EngineFailures`.
    """
    single_cats, multi_cats = _check_categories(categories, data_dir)
    single = select_entries(load_bfcl(data_dir, single_cats), per_category, seed)
    multi: list[MultiTurnEntry] = []
    mt_n = per_category if multi_turn_per_category is None else multi_turn_per_category
    if multi_cats and mt_n != 0:
        multi = select_entries(load_multi_turn(multi_cats), mt_n, seed)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    with tqdm(total=len(single) + len(multi), desc="bfcl", disable=not progress) as bar:
        rows = _single_turn_rows(
            engine, single, date=date, sampling=sampling, thinking=thinking,
            dot_to_underscore=dot_to_underscore, bar=bar,
            max_failure_share=max_engine_failure_share,
        )  # fmt: skip
        rows += _multi_turn_rows(
            engine, multi, date=date, sampling=sampling, thinking=thinking, bar=bar,
            max_failure_share=max_engine_failure_share,
        )  # fmt: skip
    return rows


def evaluate_bfcl(engine: Engine, data_dir: str | Path, *, iteration: int, **kw) -> pa.Table:
    """:func:`run_bfcl` as EVAL_ITEMS rows of iteration ``iteration``."""
    items = [
        {"iter": iteration, "suite": "bfcl", **{k: r.get(k) for k in _ITEM_KEYS}}
        for r in run_bfcl(engine, data_dir, **kw)
    ]
    return rows_to_table(items, EVAL_ITEMS)


_ITEM_KEYS = ("item_id", "category", "ok", "reason", "raw_text")


def category_counts(df: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """{category: (correct, scored)} from rows with category, ok, reason, in category
    order; malformed entries (reason bad_entry) are not scored."""
    per = (
        df.filter(pl.col("reason") != "bad_entry")
        .group_by("category")
        .agg(n=pl.len().cast(pl.Int64), correct=pl.col("ok").sum().cast(pl.Int64))
    )
    order = {c: i for i, c in enumerate(ENTRY_ORDER)}
    per = per.sort(
        pl.col("category").replace_strict(order, default=len(order), return_dtype=pl.Int64)
    )
    return {r["category"]: (r["correct"], r["n"]) for r in per.to_dicts()}


def bfcl_metrics(items: pa.Table | pl.DataFrame) -> dict:
    """Per-category accuracy, ``overall`` (macro mean over categories, plus micro) and the
    leaderboard columns (``v3_<column>``, ``v4_<column>``, official aggregation)."""
    df = items if isinstance(items, pl.DataFrame) else pl.from_arrow(items)
    assert isinstance(df, pl.DataFrame)
    df = df.filter(pl.col("suite") == "bfcl")
    not_scored = df.filter(pl.col("reason") == "bad_entry").height
    engine_failed = df.filter(pl.col("reason") == "engine_error").height
    counts = category_counts(df)
    df = df.filter(pl.col("reason") != "bad_entry")
    out: dict = {c: {"accuracy": ok / n, "n": n} for c, (ok, n) in counts.items()}
    out["overall"] = {
        "accuracy": sum(m["accuracy"] for m in out.values()) / len(out) if out else None,
        "micro_accuracy": float(df["ok"].mean()) if df.height else None,
        "n": df.height,
        "categories": len(counts),
        "not_scored": not_scored,  # malformed entries, kept in eval_items with the reason
        # entries whose requests the engine failed (scored wrong; above
        # eval.max_engine_failure_share the stage fails instead)
        "engine_failed": engine_failed,
    }
    if counts:
        for prefix, cols in (("v3", v3_columns(counts)), ("v4", v4_columns(counts))):
            for name, acc in cols.items():
                key = f"{prefix}_{name.lower().replace('-', '_').replace(' ', '_')}"
                out[key] = {"accuracy": acc, "n": None}
    return out
