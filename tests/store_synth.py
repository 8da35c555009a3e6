"""Synthetic pipeline outputs for the store tests: seed pool, D_1..D_{J+1}, probe,
verdicts and expansions of iterations 1..J, with relabels, split moves and EDDE children.

The tables follow looptool.core.tables schemas and the layout contract; the loop logic
here is deliberately simple (it only has to produce realistic shapes, not learn).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from looptool.core.tables import (
    DATASET,
    EVAL_ITEMS,
    EXPANSIONS,
    PROBE,
    SAMPLES,
    VERDICTS,
    rows_to_table,
    sample_to_row,
)
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, canonical_json
from looptool.loop.live import open_live
from looptool.store.io import read_parquet, write_json_atomic, write_parquet_atomic

TOOL = ToolSpec(
    name="get_weather",
    description="Weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)


def make_sample(tag: str, kind: str = "single") -> Sample:
    """A small valid sample; ``kind`` in single | parallel | no_call (a clarify label) | multi_step."""
    ctx = [Message(role="user", content=f"weather please {tag}")]
    if kind == "multi_step":
        ctx += [
            Message(
                role="assistant",
                tool_calls=[ToolCall(name="get_weather", arguments={"city": f"A{tag}"})],
            ),
            Message(role="tool", name="get_weather", content='{"temp": 20}'),
            Message(role="user", content="and tomorrow?"),
        ]
    if kind == "no_call":
        label = Label(text=f"Which city, {tag}?")
    elif kind == "parallel":
        label = Label(calls=[ToolCall(name="get_weather", arguments={"city": f"X{tag}"}),
                             ToolCall(name="get_weather", arguments={"city": f"Y{tag}", "days": 2})])  # fmt: skip
    else:
        label = Label(
            calls=[ToolCall(name="get_weather", arguments={"city": f"C{tag}", "days": 1})]
        )
    return Sample(tools=[TOOL], context=ctx, label=label)


KINDS = ("single", "single", "parallel", "no_call", "multi_step")


def _relabel(row: dict, j: int) -> dict:
    label = Label(
        calls=[
            ToolCall(
                name="get_weather", arguments={"city": f"fixed{row['sample_id'][:6]}", "days": j}
            )
        ]
    )
    return {
        **row,
        "label": canonical_json(label.to_json()),
        "label_hash": label.hash,
        "label_rev": row["label_rev"] + 1,
        "origin": "relabel",
    }


def build(
    root: Path,
    n_seed: int = 40,
    n_heldout: int = 8,
    d1_size: int = 16,
    iters: int = 2,
    seed_new: int = 4,
    seed: int = 0,
    dup_es: bool = True,
) -> None:
    """Write data/seed/*, data/iter_1..iters (dataset, probe, verdicts, expansions,
    metrics, eval.json) and data/iter_{iters+1}/dataset.parquet under ``root``."""
    rng = random.Random(seed)
    data = Path(root) / "data"
    pool = [
        sample_to_row(
            make_sample(f"s{i}", KINDS[i % len(KINDS)]), dialogue_id=f"dlg{i // 3}", step=i % 3
        )
        for i in range(n_seed)
    ]
    held = [
        sample_to_row(make_sample(f"h{i}", KINDS[i % len(KINDS)]), dialogue_id=f"hd{i}", step=0)
        for i in range(n_heldout)
    ]
    write_parquet_atomic(data / "seed" / "samples.parquet", rows_to_table(pool, SAMPLES))
    write_parquet_atomic(data / "seed" / "heldout.parquet", rows_to_table(held, SAMPLES))
    write_json_atomic(
        data / "seed" / "metrics.json", {"samples": n_seed, "heldout": n_heldout, "apis": {"n": 3}}
    )

    dataset = [{**r, "split": "SEED", "iter": 1} for r in pool[:d1_size]]
    next_seed = d1_size
    for j in range(1, iters + 1):
        d = data / f"iter_{j}"
        write_parquet_atomic(d / "dataset.parquet", rows_to_table(dataset, DATASET))
        uniq = list({r["sample_id"]: r for r in dataset}.values())
        probe, verdicts, expansions = [], [], []
        es, hppl = [], []
        for r in uniq:
            match = rng.random() < 0.55
            ppl = round(rng.uniform(1.0, 3.0), 3)
            is_hppl = match and ppl > 2.2
            probe.append({
                "sample_id": r["sample_id"], "iter": j, "kind": r["kind"],
                "raw_text": "<tool_call>..</tool_call>",
                "think": None, "prediction": r["label"] if match else None,
                "parse_error": None, "match": match,
                "match_reason": "match" if match else "value_mismatch",
                "ppl": ppl, "n_tokens": 12, "hppl": is_hppl,
            })  # fmt: skip
            if match:
                if is_hppl:
                    hppl.append({**r, "split": "HPPL", "iter": j + 1})
                continue
            verdict = rng.choice(["PRED_WRONG", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG"])
            new = _relabel(r, j) if verdict == "LABEL_WRONG" else None
            outcome = {"PRED_WRONG": "MR", "LABEL_WRONG": "LR", "BOTH_WRONG": "DROPPED"}[verdict]
            verdicts.append({
                "sample_id": r["sample_id"], "iter": j, "verdict": verdict,
                "tier": rng.choice(["rules", "llm"]), "reason": "synthetic",
                "analysis": None, "correct_approach": None, "judge_model": "tiny",
                "response_order": "label_first", "raw_judge": None,
                "label_before": r["label"], "label_after": new["label"] if new else None,
                "kind_after": new["kind"] if new else None,
                "outcome": outcome,
            })  # fmt: skip
            if verdict == "PRED_WRONG":
                es.append({**r, "split": "ES", "iter": j + 1})
                for k in range(2):
                    child = sample_to_row(
                        make_sample(f"{r['sample_id']}-e{j}{k}"),
                        origin="edde",
                        born_iter=j,
                        parent_id=r["sample_id"],
                    )
                    accepted = k == 0 or rng.random() < 0.5
                    expansions.append({
                        **child, "iter": j, "child_index": k,
                        "scenario": rng.choice(["param_swap", "paraphrase"]),
                        "accepted": accepted, "reject_tier": None if accepted else "rules",
                        "reject_reason": None if accepted else "missing required param",
                    })  # fmt: skip
            elif new is not None:
                es.append({**new, "split": "ES", "iter": j + 1})
        write_parquet_atomic(d / "probe.parquet", rows_to_table(probe, PROBE))
        write_parquet_atomic(d / "verdicts.parquet", rows_to_table(verdicts, VERDICTS))
        write_parquet_atomic(d / "expansions.parquet", rows_to_table(expansions, EXPANSIONS))
        n_match = sum(p["match"] for p in probe)
        write_json_atomic(
            d / "probe_metrics.json", {"n": len(probe), "accuracy": n_match / len(probe)}
        )
        write_json_atomic(d / "eval.json", {
            "iter": j, "static_baseline": False,
            "heldout": {"accuracy": 0.25 * j, "n": n_heldout},
            "bfcl": {"overall": {"accuracy": 0.1 * j, "n": 20}, "simple_python": {"accuracy": 0.2, "n": 10}},
        })  # fmt: skip
        ee = [
            {**{k: v for k, v in e.items() if k in SAMPLES.names}, "split": "EE", "iter": j + 1}
            for e in expansions
            if e["accepted"]
        ]
        if dup_es and es and j == 1:
            es.append({**es[0], "copy": 1})  # es_repeat-style deliberate repeat
        new_seed = [
            {**r, "split": "SEED_NEW", "iter": j + 1}
            for r in pool[next_seed : next_seed + seed_new]
        ]
        next_seed += seed_new
        dataset = es + ee + hppl + new_seed
    write_parquet_atomic(
        data / f"iter_{iters + 1}" / "dataset.parquet", rows_to_table(dataset, DATASET)
    )


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def add_report_inputs(root: Path, iters: int = 2, noise: bool = True, seed: int = 0) -> None:
    """The files `looptool report` reads beyond the tables of ``build``: eval items,
    per-step training logs (with the newer tool-call columns on the last iteration only,
    as after a trainer upgrade), judge and seed-API metrics, and compare/compare.csv."""
    rng = random.Random(seed)
    data = Path(root) / "data"
    write_json_atomic(data / "seed" / "apis_metrics.json",
                      {"apis": 5, "apis_by_domain": {"travel": 3, "finance": 2}})  # fmt: skip
    held = read_parquet(data / "seed" / "heldout.parquet").to_pylist()
    for j in range(1, iters + 1):
        d = data / f"iter_{j}"
        items = [{"iter": j, "suite": "heldout", "item_id": r["sample_id"], "category": r["kind"],
                  "ok": k < 2 * j, "reason": "match" if k < 2 * j else "missing_calls",
                  "raw_text": "<tool_call>{}</tool_call>" if k % 2 == 0 else "no call"}
                 for k, r in enumerate(held)]  # fmt: skip
        items.append({"iter": j, "suite": "bfcl", "item_id": "simple_0",
                      "category": "simple_python", "ok": True, "reason": "valid", "raw_text": ""})  # fmt: skip
        write_parquet_atomic(d / "eval_items.parquet", rows_to_table(items, EVAL_ITEMS))
        # DVCLive's per-step files, written by DVCLive as train@j does
        names = ["epoch", "reward", "frac_reward_zero_std", "loss"]
        if j == iters:
            names += ["toolmatch/tool_call_rate", "toolmatch/reward_call"]
        live = open_live(d / "dvclive")
        for step in range(1, 7):
            live.step = step
            for name in names:
                live.log_metric(name, step / 4 if name == "epoch" else round(rng.random(), 4))
            live.next_step()
        live.end()
        write_json_atomic(d / "train_metrics.json", {"reward_mean": 0.1 * j, "steps": 6})
        judge = {"llm_calls_made": 10 * j, "llm_calls_avoided": 4 * j, "order_disagreements": j}
        if noise:
            judge["label_correction"] = {"precision": 0.5, "recall": 0.25 * j, "relabeled": 2}
        write_json_atomic(d / "judge_metrics.json", judge)
    arms = ["arm,iteration,n,heldout_exact,ci_low,ci_high,tool_call_rate,bfcl_accuracy"]
    arms += [f"{arm},{j},8,{0.125 * j + off},{0.05 * j},{0.3 + 0.1 * j},0.5,{0.05 * j}"
             for arm, off in (("static", 0.0), ("no_hppl", 0.1)) for j in range(iters + 1)]  # fmt: skip
    (Path(root) / "compare").mkdir(exist_ok=True)
    (Path(root) / "compare" / "compare.csv").write_text("\n".join(arms) + "\n", encoding="utf-8")
