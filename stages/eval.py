"""DVC stage eval@j: `python -m stages.eval --j J [--prev P --next N ...]`.

j = 0 evaluates the warm-start checkpoint (data/iter_0/model), the curve's first point.
Reads data/iter_j/model, data/seed/heldout.parquet, eval.bfcl_dir and (j > 0)
data/iter_{prev}/eval_curve.csv; writes data/iter_j/eval.json (metrics),
data/iter_j/eval_items.parquet and data/iter_j/eval_curve.csv (plot).
"""

from __future__ import annotations

import argparse
import sys

from looptool.engines.base import EngineError
from looptool.eval.bfcl.official import BfclEvalMissing
from looptool.eval.iteration import extend_curve, format_eval, policy_engine, run_eval
from looptool.store.io import atomic_path, write_json_atomic, write_parquet_atomic
from looptool.store.views import Layout
from stages._common import iteration_params, stage_params
from stages._engines import place_gpus


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--j", type=int, required=True)
    j = parser.parse_known_args(argv)[0].j
    if j == 0:
        params, prev = stage_params(argv), None
    else:
        params, j = iteration_params(argv)
        prev = params.iteration(j).prev
    layout = Layout.at(".")
    model_dir = layout.model_dir(j)
    for need in (model_dir, layout.heldout):
        if not need.exists():
            sys.exit(f"error: eval@{j}: {need} not found (build it first: dvc repro)")
    place_gpus(params, "eval", j)
    try:
        engine = policy_engine(params, model_dir)
        items, metrics = run_eval(params, j, engine)
    except (BfclEvalMissing, EngineError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: eval@{j}: {exc}")
    out = layout.iter_dir(j)
    write_parquet_atomic(out / "eval_items.parquet", items)
    curve = extend_curve(
        None if prev is None else layout.iter_dir(prev) / "eval_curve.csv", metrics
    )
    with atomic_path(out / "eval_curve.csv") as tmp:
        curve.write_csv(tmp)
    write_json_atomic(out / "eval.json", metrics)
    print(format_eval(metrics))


if __name__ == "__main__":
    main()
