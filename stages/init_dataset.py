"""DVC stage init_dataset: the run's finite seed pool (``loop.compose.seed_pool``, a seeded
draw from D_seed's training split, never the warm start's reserved samples in
data/iter_0/warmstart_samples.parquet) and D_1 = the pool's first |D| samples."""

from __future__ import annotations

import sys

from looptool.loop.compose import draw_seed_pool, init_dataset, seed_pool_target
from looptool.store.io import read_parquet, write_json_atomic, write_parquet_atomic
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    params = stage_params(argv)
    try:
        seeds = read_parquet("data/seed/samples.parquet")
        reserved = read_parquet("data/iter_0/warmstart_samples.parquet")
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc} (run the seed stages and the warm start first: dvc repro)")
    target = seed_pool_target(params)
    pool = draw_seed_pool(seeds, size=target, seed=params.project.seed, reserved=reserved)
    res = init_dataset(seeds, pool, size=params.loop.dataset_size, reserved=reserved)
    m = res.metrics
    m["pool_target"] = "all" if target is None else target
    if target is not None and pool.num_rows < target:
        print(
            f"warning: loop.compose.seed_pool wants {target} seed samples, D_seed's training "
            f"split has {pool.num_rows} left after the warm start's reserve: the pool holds "
            "them all",
            file=sys.stderr,
        )
    if m["total"] == 0:
        sys.exit(
            f"error: init_dataset: no seed sample left for D_1: D_seed has {m['seed_pool']}, "
            f"and the warm start reserved {m['reserved_warmstart']} (warmstart.max_samples "
            f"{params.warmstart.max_samples}, split reserved); lower warmstart.max_samples "
            "or set warmstart.split: shared"
        )
    if m["shortfall"] > 0:
        print(
            f"warning: D_seed has {m['seed_pool']} samples, {m['reserved_warmstart']} of them "
            f"reserved by the warm start: fewer than loop.dataset_size="
            f"{params.loop.dataset_size} left; D_1 holds them all",
            file=sys.stderr,
        )
    write_parquet_atomic("data/iter_1/seed_pool.parquet", pool)
    write_parquet_atomic("data/iter_1/dataset.parquet", res.dataset)
    write_parquet_atomic("data/iter_1/seed_used.parquet", res.seed_used)
    write_json_atomic("data/iter_1/init_metrics.json", res.metrics)


if __name__ == "__main__":
    main()
