"""Held-out evaluation: the policy on data/seed/heldout.parquet, strict ToolMatch.

Prompts are the training prompts (looptool.core.prompting), decoding is greedy, and a
completion scores 1 only if strict ToolMatch accepts it (DESIGN §4), so held-out
accuracy is the number the loop optimizes, measured on dialogues it never trained on.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from looptool.core.match import CALL_KINDS, KIND_GROUP_OF, match_strict
from looptool.core.tables import EVAL_ITEMS, label_from_json, rows_to_table, sample_from_row
from looptool.engines.base import Engine, SamplingParams
from looptool.engines.policy_request import policy_request
from looptool.eval.interval import wilson_interval
from looptool.eval.policy import FailureBudget, generate_answers
from looptool.params.evaluation import MAX_ENGINE_FAILURE_SHARE

# Reasons that are not the model's answer being wrong but it not being scorable at all.
NOT_SCORED = ("bad_sample",)
# Reasons of a call-labelled item whose answer held no parseable call.
NO_CALL_ANSWER = ("missing_calls", "parse_error", "engine_error")


def evaluate_heldout(
    engine: Engine,
    heldout: pa.Table,
    *,
    iteration: int,
    date: str,
    max_tokens: int = 256,
    thinking: bool = False,
    limit: int | None = None,
    max_engine_failure_share: float = MAX_ENGINE_FAILURE_SHARE,
) -> pa.Table:
    """Decode every held-out sample greedily and score it; returns EVAL_ITEMS rows.

    A row that does not rebuild into a sample is kept with reason ``bad_sample`` (and
    left out of accuracy), never dropped. A failed request is an ``engine_error`` item
    (scored wrong, counted as ``engine_failed``); more than ``max_engine_failure_share``
    of them raise :class:`~looptool.eval.policy.EngineFailures`.
    """
    rows = heldout.to_pylist()[:limit] if limit else heldout.to_pylist()
    items: list[dict] = []
    todo: list[tuple[int, object]] = []  # (item index, sample)
    for row in rows:
        base = {"iter": iteration, "suite": "heldout", "item_id": row.get("sample_id") or "?",
                "category": row.get("kind") or "?"}  # fmt: skip
        try:
            sample = sample_from_row(row)
            label_from_json(row["label"])
        except (ValueError, KeyError, TypeError) as exc:
            items.append({**base, "ok": False, "reason": "bad_sample", "raw_text": str(exc)[:500]})
            continue
        todo.append((len(items), sample))
        items.append(base)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    requests = [policy_request(s, date, sampling, thinking) for _, s in todo]
    budget = FailureBudget(
        "held-out eval", len(requests), engine, max_share=max_engine_failure_share
    )
    answers = generate_answers(engine, requests, budget=budget)
    for (i, sample), (text, error) in zip(todo, answers, strict=True):
        if text is None:
            items[i].update(ok=False, reason="engine_error", raw_text=error)
            continue
        res = match_strict(text, sample.label)
        items[i].update(ok=res.ok, reason=res.reason, raw_text=text)
    return rows_to_table(items, EVAL_ITEMS)


def heldout_metrics(items: pa.Table | pl.DataFrame) -> dict:
    """accuracy, n, parse_rate, accuracy per kind and per kind group (call / clarify /
    irrelevant) and failure reasons of held-out items."""
    df = items if isinstance(items, pl.DataFrame) else pl.from_arrow(items)
    assert isinstance(df, pl.DataFrame)
    df = df.filter(pl.col("suite") == "heldout")
    scored = df.filter(~pl.col("reason").is_in(NOT_SCORED))
    n = scored.height
    by_kind, by_group = (
        scored.group_by(key)
        .agg(n=pl.len().cast(pl.Int64), accuracy=pl.col("ok").mean())
        .sort("category")
        for key in ("category", pl.col("category").replace(KIND_GROUP_OF))
    )
    reasons = df.group_by("reason").agg(n=pl.len().cast(pl.Int64)).sort("reason")
    engine_failed = scored.filter(pl.col("reason") == "engine_error").height
    parsed = scored.filter(~pl.col("reason").is_in(["parse_error", "engine_error"])).height
    hits = int(scored["ok"].sum()) if n else 0
    ci = wilson_interval(hits, n) if n else None
    calls = scored.filter(pl.col("category").is_in(CALL_KINDS))
    with_call = calls.filter(~pl.col("reason").is_in(NO_CALL_ANSWER)).height
    return {
        "accuracy": hits / n if n else None,
        "n": n,
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
        "ci_method": "wilson95",
        # greedy answers holding a parseable call, among call-labelled items
        "tool_call_rate": with_call / calls.height if calls.height else None,
        "n_call_labelled": calls.height,
        "parse_rate": parsed / n if n else None,
        "not_scored": df.height - n,
        # requests the engine failed (scored wrong; above eval.max_engine_failure_share the
        # stage fails instead)
        "engine_failed": engine_failed,
        "by_kind": {
            r["category"]: {"accuracy": r["accuracy"], "n": r["n"]} for r in by_kind.to_dicts()
        },
        "by_kind_group": {
            r["category"]: {"accuracy": r["accuracy"], "n": r["n"]} for r in by_group.to_dicts()
        },
        "reasons": {r["reason"]: r["n"] for r in reasons.to_dicts()},
    }
