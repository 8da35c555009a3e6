"""DVC stage judge@j: the JGLV cascade over every probe mismatch of D_j."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from looptool.core.tables import VERDICTS
from looptool.engines import EngineError
from looptool.loop.judge.metrics import label_correction_metrics
from looptool.loop.judge.run import run_judge
from looptool.store.io import read_parquet, write_json_atomic, write_parquet_atomic
from stages._common import iteration_params, skip_static_stage
from stages._engines import open_engine, place_gpus

NOISE = Path("data/seed/label_noise.parquet")


def main(argv: list[str] | None = None) -> None:
    params, j = iteration_params(argv)
    if skip_static_stage(
        params, j, f"data/iter_{j}/verdicts.parquet", VERDICTS, f"data/iter_{j}/judge_metrics.json"
    ):
        return
    lp = params.loop
    try:
        dataset = read_parquet(f"data/iter_{j}/dataset.parquet")
        probe = read_parquet(f"data/iter_{j}/probe.parquet")
        judges = []
        if lp.ablation != "no_jglv":
            specs = lp.judge.models or [params.engines.judge]
            place_gpus(params, "judge", j)
            # opened one at a time by run_judge, each closed before the next
            judges = [partial(open_engine, params, s, "judge") for s in specs]
        res = run_judge(
            judges,
            dataset,
            probe,
            iteration=j,
            date=params.project.date,
            params=lp,
            seed=params.project.seed,
        )
    except (FileNotFoundError, EngineError, ValueError) as exc:
        sys.exit(f"error: judge@{j}: {exc}")
    metrics = {"iteration": j, "ablation": lp.ablation, **res.metrics}
    if NOISE.exists():
        noise = read_parquet(NOISE)
        if noise.num_rows:
            metrics["label_correction"] = label_correction_metrics(res.table, dataset, noise)
    write_parquet_atomic(f"data/iter_{j}/verdicts.parquet", res.table)
    write_json_atomic(f"data/iter_{j}/judge_metrics.json", metrics)


if __name__ == "__main__":
    main()
