"""DVC stage train@j: GRPO on data/iter_j/dataset.parquet from data/iter_{prev}/model.

Writes data/iter_j/model (save_pretrained: model + tokenizer), train_metrics.json and
train_plots.csv (one row per optimizer step). Multi-GPU: run the same module under
`accelerate launch --config_file configs/accelerate_deepspeed_zero2.yaml -m stages.train`
(set ``train.launcher`` so dvc.yaml's command does it); only rank 0 writes metrics.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from looptool.engines import EngineError, default_cache_dir
from looptool.loop.train import TrainError, is_main_process, train_grpo
from looptool.params import ParamsError, load_params
from looptool.store.io import write_json_atomic, write_text_atomic


def write_plots(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Per-step rows as CSV (DVC plots); columns absent at a step stay empty."""
    import polars as pl

    frame = (
        pl.DataFrame(list(rows), infer_schema_length=None) if rows else pl.DataFrame({"step": []})
    )
    write_text_atomic(path, frame.write_csv())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--j", type=int, required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="root holding iter_* directories")
    # DVC passes the whole foreach item (--prev/--next/...); the chain is read from params.
    args, _ = parser.parse_known_args(argv)
    try:
        params = load_params(args.params).for_iteration(args.j)
        item = params.iteration(args.j)
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    root = Path(args.data)
    here = root / f"iter_{args.j}"
    try:
        result = train_grpo(
            here / "dataset.parquet",
            root / f"iter_{item.prev}" / "model",
            here / "model",
            params.train,
            date=params.project.date,
            scratch_root=default_cache_dir(params.project.cache_dir),
            name=f"iter_{args.j}",
        )
    except (TrainError, EngineError) as exc:
        sys.exit(f"error: train@{args.j}: {exc}")
    if is_main_process():
        write_json_atomic(here / "train_metrics.json", {"iteration": args.j, **result.metrics})
        write_plots(here / "train_plots.csv", result.plots)


if __name__ == "__main__":
    main()
