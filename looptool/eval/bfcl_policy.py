"""The policy on BFCL's single-turn categories: prompt, decode greedily, score with the
project's BFCL evaluator (looptool.eval.bfcl, BFCL-mode ToolMatch).

Each entry is prompted like a training sample: the policy system prompt, the entry's
question as the conversation, its function docs as the tool list (normalized to JSON
schema when possible, else passed through as written). A per-category subset
(seeded, identical every iteration) keeps CPU runs short.
"""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pyarrow as pa

from looptool.core.codec import parse_completion
from looptool.core.match_bfcl import BfclDataError
from looptool.core.tables import EVAL_ITEMS, rows_to_table
from looptool.core.types import Label, Message, Sample, ToolSpec, ToolSpecError
from looptool.engines.base import ChatRequest, Engine, SamplingParams
from looptool.eval.bfcl import (
    ALL_CATEGORIES,
    BfclEntry,
    available_categories,
    load_bfcl,
    score_entry,
)
from looptool.eval.policy import generate_answers
from looptool.loop.prompting import policy_messages


def select_entries(
    entries: dict[str, BfclEntry], per_category: int | None, seed: int
) -> list[BfclEntry]:
    """Up to ``per_category`` entries of each category, a seeded sample in id order."""
    by_cat: dict[str, list[str]] = {}
    for eid, e in entries.items():
        by_cat.setdefault(e.category, []).append(eid)
    chosen: list[BfclEntry] = []
    for cat in sorted(by_cat, key=lambda c: ALL_CATEGORIES.index(c)):
        ids = sorted(by_cat[cat])
        if per_category is not None and len(ids) > per_category:
            ids = sorted(random.Random(f"{seed}:{cat}").sample(ids, per_category))
        chosen += [entries[i] for i in ids]
    return chosen


def entry_prompt(entry: BfclEntry, date: str) -> tuple[list[dict], list[dict]]:
    """(messages, tools) for one BFCL entry. Raises ValueError on a malformed question."""
    turns = entry.question or []
    raw_msgs = [m for turn in turns for m in (turn if isinstance(turn, list) else [turn])]
    context = [Message.model_validate(m) for m in raw_msgs]
    tools: list[dict] = []
    for i, fn in enumerate(entry.functions):
        try:
            tools.append(ToolSpec.from_any(fn, where=f"{entry.id} function {i}").to_openai())
        except ToolSpecError:
            # a doc our normalizer rejects is still what BFCL shows the model
            tools.append({"type": "function", "function": fn})
    sample = Sample(tools=[], context=context, label=Label(text=""))
    return policy_messages(sample, date), tools


def evaluate_bfcl(
    engine: Engine,
    data_dir: str | Path,
    *,
    iteration: int,
    date: str,
    categories: list[str] | None = None,
    per_category: int | None = 20,
    seed: int = 0,
    max_tokens: int = 256,
    thinking: bool = False,
    dot_to_underscore: bool = False,
) -> pa.Table:
    """Decode and score a per-category subset of BFCL; returns EVAL_ITEMS rows."""
    present = available_categories(data_dir) if Path(data_dir).is_dir() else []
    if categories is not None:
        unknown = [c for c in categories if c not in ALL_CATEGORIES]
        if unknown:
            raise ValueError(
                f"eval.bfcl_categories: unknown {unknown}; known: {', '.join(ALL_CATEGORIES)}"
            )
        missing = [c for c in categories if c not in present]
        if missing:
            raise FileNotFoundError(f"{data_dir}: no BFCL_v4_<category>.json for {missing}")
    entries = select_entries(load_bfcl(data_dir, categories), per_category, seed)
    items: list[dict] = []
    todo: list[tuple[int, BfclEntry]] = []
    requests: list[ChatRequest] = []
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    for e in entries:
        base = {"iter": iteration, "suite": "bfcl", "item_id": e.id, "category": e.category}
        try:
            messages, tools = entry_prompt(e, date)
        except ValueError as exc:  # pydantic ValidationError included
            items.append({**base, "ok": False, "reason": "bad_entry", "raw_text": str(exc)[:500]})
            continue
        todo.append((len(items), e))
        items.append(base)
        requests.append(
            ChatRequest(
                messages=messages,
                tools=tools,
                params=sampling,
                chat_template_kwargs={"enable_thinking": thinking},
            )  # fmt: skip
        )
    for (i, e), (text, error) in zip(todo, generate_answers(engine, requests), strict=True):
        if text is None:
            items[i].update(ok=False, reason="engine_error", raw_text=error)
            continue
        parsed = parse_completion(text)
        # A clean parse is scored as the calls it holds (none = no call); a broken one is
        # handed over as text so the evaluator records the decode error.
        result = text if parsed.error else [c.to_json() for c in parsed.calls]
        try:
            res = score_entry(e, result, dot_to_underscore)
        except BfclDataError as exc:
            items[i].update(ok=False, reason="bad_entry", raw_text=f"{exc}\n---\n{text}")
            continue
        items[i].update(
            ok=res.valid, reason="valid" if res.valid else res.error_type, raw_text=text
        )
    return rows_to_table(items, EVAL_ITEMS)


def bfcl_metrics(items: pa.Table | pl.DataFrame) -> dict:
    """Per-category accuracy and ``overall`` (macro mean over categories, plus micro)."""
    df = items if isinstance(items, pl.DataFrame) else pl.from_arrow(items)
    assert isinstance(df, pl.DataFrame)
    df = df.filter(pl.col("suite") == "bfcl")
    not_scored = df.filter(pl.col("reason") == "bad_entry").height
    df = df.filter(pl.col("reason") != "bad_entry")
    per = df.group_by("category").agg(n=pl.len().cast(pl.Int64), accuracy=pl.col("ok").mean())
    order = {c: i for i, c in enumerate(ALL_CATEGORIES)}
    per = per.sort(
        pl.col("category").replace_strict(order, default=len(order), return_dtype=pl.Int64)
    )
    out: dict = {r["category"]: {"accuracy": r["accuracy"], "n": r["n"]} for r in per.to_dicts()}
    out["overall"] = {
        "accuracy": float(per["accuracy"].mean()) if per.height else None,  # macro
        "micro_accuracy": float(df["ok"].mean()) if df.height else None,
        "n": df.height,
        "categories": per.height,
        "not_scored": not_scored,  # malformed entries, kept in eval_items with the reason
    }
    return out
