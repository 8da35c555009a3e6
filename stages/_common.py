"""Shared helpers for the thin DVC stage entry points."""

from __future__ import annotations

import argparse
import sys

from looptool.engines import factory
from looptool.engines.base import Engine, EngineError
from looptool.params import Params, ParamsError, load_params
from looptool.params.engines import EngineSpec


def iteration_params(argv: list[str] | None = None) -> tuple[Params, int]:
    """Parse ``--j J`` (DVC passes the whole foreach item: --j --prev --next --overrides.*)
    and return (params with iteration J's overrides applied, J)."""
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument("--j", type=int, required=True)
    parser.add_argument("--params", default="params.yaml")
    # --prev/--next/--overrides.* are on the command line so DVC sees item changes;
    # their values are read (validated) from params.yaml instead.
    args, _ = parser.parse_known_args(argv)
    try:
        params = load_params(args.params)
        return params.for_iteration(args.j), args.j
    except ParamsError as exc:
        sys.exit(f"error: {exc}")


def stage_params(argv: list[str] | None = None) -> Params:
    """Params for a stage outside the iteration loop."""
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument("--params", default="params.yaml")
    args, _ = parser.parse_known_args(argv)
    try:
        return load_params(args.params)
    except ParamsError as exc:
        sys.exit(f"error: {exc}")


def skip_static_stage(params: Params, j: int, table: str, schema, metrics: str) -> bool:
    """With ``eval.static_baseline`` D_{j+1} is drawn from the seed pool alone, so the
    loop's data stages (probe, judge, expand) have nothing to decide: write an empty table
    and a metrics file saying so, and return True (the caller stops there)."""
    if not params.eval.static_baseline:
        return False
    from looptool.store.io import write_json_atomic, write_parquet_atomic

    write_parquet_atomic(table, schema.empty_table())
    write_json_atomic(
        metrics,
        {"iteration": j, "skipped": "eval.static_baseline: D_{j+1} is drawn from the seed pool"},
    )
    print(f"iteration {j}: static baseline, {table} left empty")
    return True


def place_gpus(params: Params, stage: str, j: int | None = None) -> None:
    """CUDA_VISIBLE_DEVICES for this stage from its engines' ``gpus`` (before CUDA starts)."""
    from looptool.engines.placement import apply_gpus, stage_specs

    name = stage if j is None else f"{stage}@{j}"
    try:
        gpus = apply_gpus(stage_specs(params, stage), name)
    except EngineError as exc:
        sys.exit(f"error: {exc}")
    if gpus is not None:
        print(f"{name}: CUDA_VISIBLE_DEVICES={gpus}")


def open_engine(params: Params, spec: EngineSpec, role: str) -> Engine:
    """The role's engine behind the request cache (when `engines.use_cache`)."""
    return factory.open_engine(
        spec, role, use_cache=params.engines.use_cache, cache_dir=params.project.cache_dir
    )


def engine_stats(engine: Engine) -> dict:
    """Model identity plus cache hits/misses, for a stage's metrics."""
    stats = engine.stats() if hasattr(engine, "stats") else {}
    # openai backend: the endpoint's capabilities as declared or probed (#14)
    caps = getattr(engine, "capabilities", None)
    stats = {**stats, "capabilities": caps} if isinstance(caps, dict) else stats
    return {"model": engine.model_id, "backend": engine.backend, **stats}
