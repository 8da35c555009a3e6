"""DVC stage `warmstart`: data/iter_0/model, the checkpoint iteration 1 starts from.

SFT of the base model on D_seed's training split when ``warmstart.enabled``, else a
plain save_pretrained copy of the base model. Afterwards, optionally, a greedy format
check on held-out prompts (parseable <tool_call> rate, strict match rate). Writes
data/iter_0/warmstart_samples.parquet: the seed samples the warm start trained on and so
reserved for itself (``warmstart.split: reserved``; empty otherwise), which D_1 and
Seed-new never draw; a seed sample longer than ``max_length`` is never trained on, so it
is not reserved. Per-step curves: data/iter_0/dvclive/ (DVCLive; with the warm start
disabled, a metrics.json with step 0 and no curves).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from looptool.core.tables import SEED_USED, rows_to_table
from looptool.engines import EngineError, default_cache_dir
from looptool.loop.guard import heldout_check
from looptool.loop.live import write_empty_live
from looptool.loop.train_rows import TrainError
from looptool.loop.train_setup import is_main_process
from looptool.loop.warmstart import copy_base, train_sft
from looptool.params import ParamsError, load_params
from looptool.store.io import write_json_atomic, write_parquet_atomic

OUT = "data/iter_0"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--samples", default="data/seed/samples.parquet")
    parser.add_argument("--heldout", default="data/seed/heldout.parquet")
    parser.add_argument("--out", default=OUT, help="directory receiving model/ and metrics")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    ws = params.warmstart
    base = ws.base_model or params.engines.policy.model
    if not base:
        sys.exit("error: warmstart: set warmstart.base_model or engines.policy.model")
    out = Path(args.out)
    model_dir = out / "model"
    try:
        if ws.enabled:
            result = train_sft(
                args.samples,
                base,
                model_dir,
                ws,
                date=params.project.date,
                scratch_root=default_cache_dir(params.project.cache_dir),
                live_dir=out / "dvclive",
            )
        else:
            result = copy_base(base, model_dir)
            if is_main_process():
                write_empty_live(out / "dvclive")  # dvc.yaml's declared outputs, no steps
        if not is_main_process():
            return
        metrics = {"enabled": ws.enabled, **result.metrics, "split": ws.split}
        reserved = result.sample_ids if ws.enabled and ws.split == "reserved" else []
        metrics["reserved_samples"] = len(reserved)
        if ws.heldout_check:
            metrics["heldout"] = heldout_check(params, model_dir, args.heldout)
    except (TrainError, EngineError) as exc:
        sys.exit(f"error: warmstart: {exc}")
    write_parquet_atomic(
        out / "warmstart_samples.parquet",
        rows_to_table([{"sample_id": s, "used_iter": 0} for s in reserved], SEED_USED),
    )
    write_json_atomic(out / "warmstart_metrics.json", metrics)


if __name__ == "__main__":
    main()
