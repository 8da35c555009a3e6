"""DVC stage compose@j: D_{j+1} = ES + EE + HPPL + Seed-new (Eq. 5), or the static baseline."""

from __future__ import annotations

import sys

from looptool.loop.compose import compose_next, compose_static, compose_static_pool, in_pool
from looptool.store.io import read_parquet, write_json_atomic, write_parquet_atomic
from stages._common import iteration_params


def main(argv: list[str] | None = None) -> None:
    params, j = iteration_params(argv)
    nxt, lp = j + 1, params.loop
    try:
        seeds = read_parquet("data/seed/samples.parquet")
        pool = read_parquet("data/iter_1/seed_pool.parquet")
        used = read_parquet(f"data/iter_{j}/seed_used.parquet")
        if params.eval.static_baseline and params.eval.static_source == "fresh":
            res = compose_static(
                seeds, used, next_j=nxt, size=lp.dataset_size, seed=params.project.seed
            )
        elif params.eval.static_baseline:
            res = compose_static_pool(seeds, pool, used, next_j=nxt, size=lp.dataset_size)
        else:
            res = compose_next(
                read_parquet(f"data/iter_{j}/dataset.parquet"),
                read_parquet(f"data/iter_{j}/probe.parquet"),
                read_parquet(f"data/iter_{j}/verdicts.parquet"),
                read_parquet(f"data/iter_{j}/expansions.parquet"),
                in_pool(seeds, pool),  # Seed-new draws only from the run's finite pool
                used,
                next_j=nxt,
                params=lp,
                seed=params.project.seed,
            )
    except FileNotFoundError as exc:
        sys.exit(f"error: compose@{j}: {exc}")
    res.metrics.setdefault("pool_size", pool.num_rows)
    if res.metrics["shortfall"] > 0:
        print(
            f"warning: D_{nxt} is {res.metrics['shortfall']} samples short of {lp.dataset_size}",
            file=sys.stderr,
        )
    write_parquet_atomic(f"data/iter_{nxt}/dataset.parquet", res.dataset)
    write_parquet_atomic(f"data/iter_{nxt}/seed_used.parquet", res.seed_used)
    write_json_atomic(f"data/iter_{j}/compose_metrics.json", res.metrics)


if __name__ == "__main__":
    main()
