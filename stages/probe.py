"""DVC stage probe@j: greedy capability probing of D_j with the iteration's policy."""

from __future__ import annotations

import sys

from looptool.core.tables import PROBE
from looptool.engines import EngineError
from looptool.eval.policy import policy_spec
from looptool.loop.probe import probe_metrics, run_probe
from looptool.store.io import read_parquet, write_json_atomic, write_parquet_atomic
from stages._common import iteration_params, skip_static_stage
from stages._engines import engine_stats, open_engine, place_gpus


def main(argv: list[str] | None = None) -> None:
    params, j = iteration_params(argv)
    if skip_static_stage(
        params, j, f"data/iter_{j}/probe.parquet", PROBE, f"data/iter_{j}/probe_metrics.json"
    ):
        return
    try:
        dataset = read_parquet(f"data/iter_{j}/dataset.parquet")
        spec = policy_spec(params.engines.policy, f"data/iter_{j}/model")
        place_gpus(params, "probe", j)
        engine = open_engine(params, spec, "policy")
        table = run_probe(
            engine, dataset, iteration=j, date=params.project.date, params=params.loop.probe
        )
    except (FileNotFoundError, EngineError) as exc:
        sys.exit(f"error: probe@{j}: {exc}")
    metrics = {"iteration": j, **probe_metrics(table), "cache": [engine_stats(engine)]}
    write_parquet_atomic(f"data/iter_{j}/probe.parquet", table)
    write_json_atomic(f"data/iter_{j}/probe_metrics.json", metrics)


if __name__ == "__main__":
    main()
