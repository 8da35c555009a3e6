"""DVC stage train@j: GRPO (or SFT, ``train.algorithm``) on data/iter_j/dataset.parquet
from data/iter_{prev}/model; ``noop`` (dry runs) writes a placeholder checkpoint instead.

Writes data/iter_j/model (save_pretrained: model + tokenizer), train_metrics.json and
data/iter_j/dvclive/ (DVCLive: metrics.json, plots/metrics/*.tsv with one row per optimizer
step, params.yaml; written while training runs). Then the collapse guard: the new checkpoint
on the warm start's held-out check prompts (looptool.loop.guard), recorded under
``guard`` in the metrics; below ``train.guard.min_ratio`` of the warm start's tool-call
rate it warns loudly, or fails the stage with ``train.guard.action: fail``. Multi-GPU: run the same module under
`accelerate launch --config_file configs/accelerate_deepspeed_zero2.yaml -m stages.train`
(set ``train.launcher`` so dvc.yaml's command does it); only rank 0 writes metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from looptool.engines import EngineError, default_cache_dir
from looptool.loop.guard import collapse_kind, guard_verdict, heldout_check
from looptool.loop.train import train_grpo
from looptool.loop.train_noop import train_noop
from looptool.loop.train_rows import TrainError
from looptool.loop.train_setup import is_main_process
from looptool.loop.warmstart import train_sft
from looptool.params import ParamsError, load_params
from looptool.store.io import write_json_atomic
from looptool.store.train_record import rows_too_long


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--j", type=int, required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="root holding iter_* directories")
    parser.add_argument("--heldout", default=None, help="default: <data>/seed/heldout.parquet")
    # DVC passes the whole foreach item (--prev/--next/...); the chain is read from params.
    args, _ = parser.parse_known_args(argv)
    try:
        params = load_params(args.params).for_iteration(args.j)
        item = params.iteration(args.j)
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    root = Path(args.data)
    here = root / f"iter_{args.j}"
    tp = params.train
    common = {
        "date": params.project.date,
        "scratch_root": default_cache_dir(params.project.cache_dir),
        "name": f"iter_{args.j}",
        "live_dir": here / "dvclive",
    }
    start = root / f"iter_{item.prev}" / "model"
    try:
        if tp.algorithm == "noop":  # the dry run: a placeholder checkpoint, no training
            result = train_noop(
                here / "dataset.parquet",
                start,
                here / "model",
                tp.noop,
                live_dir=common["live_dir"],
            )
        elif tp.algorithm == "sft":
            result = train_sft(
                here / "dataset.parquet",
                start,
                here / "model",
                tp.sft,
                kind="train",
                max_no_call_share=tp.max_no_call_share,
                **common,
            )
        else:
            result = train_grpo(here / "dataset.parquet", start, here / "model", tp, **common)
        if not is_main_process():
            return
        metrics = {"iteration": args.j, "algorithm": tp.algorithm, **result.metrics}
        if tp.guard.enabled and params.warmstart.heldout_check:
            heldout = args.heldout or root / "seed" / "heldout.parquet"
            check = heldout_check(params, here / "model", heldout)
            baseline = read_warmstart_check(root / "iter_0" / "warmstart_metrics.json")
            metrics["heldout"] = check
            metrics["guard"] = guard_verdict(check, baseline, tp.guard)
    except (TrainError, EngineError) as exc:
        sys.exit(f"error: train@{args.j}: {exc}")
    write_json_atomic(here / "train_metrics.json", metrics)
    limit = (
        f"train.sft.max_length ({tp.sft.max_length})"
        if tp.algorithm == "sft"
        else f"train.max_prompt_length ({tp.max_prompt_length})"
    )
    if note := too_long_note(metrics, f"data/iter_{args.j}/dataset.parquet", limit):
        print(f"WARNING: train@{args.j}: {note}", file=sys.stderr)
    guard = metrics.get("guard")
    if guard and not guard["ok"]:
        msg = (
            f"train@{args.j}: COLLAPSE GUARD: greedy tool-call rate on call-labelled held-out "
            f"prompts {guard['tool_call_rate']:.2f} < {tp.guard.min_ratio} x the warm start's "
            f"{guard['warmstart_tool_call_rate']:.2f}: {collapse_kind(guard)} "
            "(README: 'Keeping GRPO from collapsing')"
        )
        if tp.guard.action == "fail":
            sys.exit(f"error: {msg}")
        print(f"WARNING: {msg}", file=sys.stderr)


def too_long_note(metrics: dict, table: str, limit: str) -> str | None:
    """What the length limit left out of training, per split of D_j (None: nothing)."""
    n, cut = metrics.get("samples"), rows_too_long(metrics)
    if n is None or not cut:
        return None
    total = metrics.get("splits_dataset") or {}
    per_split = ", ".join(
        f"{split} {k} of {total.get(split, k)}"
        for split, k in (metrics.get("splits_too_long") or {}).items()
    )
    return f"{cut} of {n} rows of {table} are longer than {limit} and are not trained on" + (
        f" ({per_split})" if per_split else ""
    )


def read_warmstart_check(path: Path) -> dict | None:
    """The warm start's held-out check from its metrics file (None when absent)."""
    try:
        return json.loads(path.read_text()).get("heldout")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


if __name__ == "__main__":
    main()
