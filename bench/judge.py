"""Benchmark: JGLV cascade throughput of tiers 0-1 (no LLM), rows/s per phase.

Builds N synthetic probe mismatches over a few tool schemas, a third each resolved by
tier 0 (equal after normalization), by tier 1 with an invalid prediction, and by tier 1
with an invalid label (``rules_label_wrong: accept``), then times loading/joining,
tier 0, tier 1 and the whole :func:`looptool.loop.judge.run.run_judge` call.

    .venv/bin/python -m bench.judge [--n 20000]
"""

from __future__ import annotations

import argparse
import time

from looptool.core.codec import parse_completion, render_label
from looptool.core.match import match_strict
from looptool.core.tables import DATASET, PROBE, rows_to_table, sample_kind, sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, canonical_json
from looptool.loop.judge.rules import tier0, tier1
from looptool.loop.judge.run import mismatch_items, run_judge
from looptool.params.loop import LoopParams

TOOLS = [
    ToolSpec.from_any(
        {
            "name": f"tool_{k}",
            "description": f"Synthetic tool {k}.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "count": {"type": "integer", "minimum": 1},
                    "unit": {"type": "string", "enum": ["metric", "imperial"], "default": "metric"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["city", "count"],
            },
        }
    )
    for k in range(8)
]


class NoLLM:
    """A judge engine that must never be reached: tiers 0-1 resolve every row."""

    backend, model_id, batch_size, supports_choice = "none", "none", 1, True

    def generate(self, requests):
        raise AssertionError("tier 2 reached")

    choose = score = generate


def synthetic(n: int):
    ds, pr = [], []
    for i in range(n):
        tool = TOOLS[i % len(TOOLS)]
        gold = {"city": f"City {i}", "count": 1 + i % 9, "tags": ["a", "b"]}
        kind = i % 3
        if kind == 0:  # tier 0: case/space/default differences only
            pred = {**gold, "city": f"  city {i} ", "unit": "metric"}
        elif kind == 1:  # tier 1: prediction misses a required argument
            pred = {k: v for k, v in gold.items() if k != "count"}
        else:  # tier 1: label breaks the enum, prediction valid
            pred = {**gold, "unit": "imperial"}
            gold = {**gold, "unit": "kelvin"}
        s = Sample(
            tools=[tool, TOOLS[(i + 1) % len(TOOLS)]],
            context=[Message(role="user", content=f"request {i} about City {i}")],
            label=Label(calls=[ToolCall(name=tool.name, arguments=gold)]),
        )
        text = render_label(Label(calls=[ToolCall(name=tool.name, arguments=pred)]))
        parsed = parse_completion(text)
        ds.append({**sample_to_row(s), "split": "SEED", "iter": 1, "copy": 0})
        pr.append(
            {
                "sample_id": s.sample_id,
                "iter": 1,
                "kind": sample_kind(s),
                "raw_text": text,
                "prediction": canonical_json(parsed.to_label().to_json()),
                "match": match_strict(parsed, s.label).ok,
                "match_reason": "value_mismatch",
                "ppl": 1.0 + i % 7,
                "n_tokens": 20,
                "hppl": False,
            }
        )
    return rows_to_table(ds, DATASET), rows_to_table(pr, PROBE)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="probe mismatches to judge")
    args = ap.parse_args(argv)
    ds, probe = synthetic(args.n)
    params = LoopParams(judge={"rules_label_wrong": "accept"})
    rows = []

    def timed(phase: str, fn):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        rows.append({"phase": phase, "rows": args.n, "seconds": dt, "rows_per_s": args.n / dt})
        return out

    items = timed("load + join + parse", lambda: mismatch_items(ds, probe))
    decided = timed("tier 0 (equivalence)", lambda: [tier0(it) for it in items])
    rest = [it for it, d in zip(items, decided, strict=True) if d is None]
    timed("tier 1 (schema rules)", lambda: [tier1(it, params.judge) for it in rest])
    res = timed(
        "run_judge (tiers 0-1, table, metrics)",
        lambda: run_judge([NoLLM()], ds, probe, iteration=1, date="2026-11-22", params=params),
    )
    assert res.metrics["resolved_by_tiers_0_1"] == args.n, res.metrics
    print(
        f"JGLV cascade, {args.n:,} mismatches (1/3 tier 0, 2/3 tier 1); verdicts {res.metrics['verdicts']}"
    )
    header = f"{'phase':<40} {'seconds':>8} {'rows/s':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['phase']:<40} {r['seconds']:>8.2f} {r['rows_per_s']:>10,.0f}")
    return rows


if __name__ == "__main__":
    main()
