"""DVC stage `warmstart`: data/iter_0/model, the checkpoint iteration 1 starts from.

SFT of the base model on D_seed's training split when ``warmstart.enabled``, else a
plain save_pretrained copy of the base model. Afterwards, optionally, a greedy format
check on held-out prompts (parseable <tool_call> rate, strict match rate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from looptool.engines import EngineError, default_cache_dir
from looptool.eval.policy import policy_spec
from looptool.loop.train import TrainError, is_main_process, read_samples
from looptool.loop.warmstart import copy_base, format_check, warm_start
from looptool.params import ParamsError, load_params
from looptool.store.io import write_json_atomic
from stages._common import open_engine
from stages.train import write_plots

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
            result = warm_start(
                args.samples,
                base,
                model_dir,
                ws,
                date=params.project.date,
                scratch_root=default_cache_dir(params.project.cache_dir),
            )
        else:
            result = copy_base(base, model_dir)
        if not is_main_process():
            return
        metrics = dict(result.metrics)
        if ws.heldout_check:
            spec = policy_spec(params.engines.policy, model_dir)
            if spec.backend in ("hf", "vllm"):
                engine = open_engine(params, spec, "policy")
                held = read_samples(args.heldout, ws.heldout_check, ws.seed)
                metrics["heldout"] = format_check(
                    engine,
                    held.samples,
                    date=params.project.date,
                    enable_thinking=ws.enable_thinking,
                    max_tokens=ws.heldout_check_max_tokens,
                )
            else:
                metrics["heldout"] = {
                    "skipped": f"policy backend {spec.backend} serves no checkpoint"
                }
    except (TrainError, EngineError) as exc:
        sys.exit(f"error: warmstart: {exc}")
    write_json_atomic(out / "warmstart_metrics.json", metrics)
    write_plots(out / "warmstart_plots.csv", result.plots)


if __name__ == "__main__":
    main()
