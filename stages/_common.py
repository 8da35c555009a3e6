"""Shared helpers for the thin DVC stage entry points: params and the static-baseline skip.

Opening engines is in stages/_engines.py, so a stage that opens none (compose,
init_dataset, ...) does not import the engine code and need not list it as a DVC dependency
(tests/test_dvc_deps.py checks every stage's imports against its deps)."""

from __future__ import annotations

import argparse
import sys

from looptool.params import Params, ParamsError, load_params


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
