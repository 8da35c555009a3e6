"""DVC stage expand@j: EDDE children of every error seed (MR + LR) of iteration j."""

from __future__ import annotations

import sys
from functools import partial

from looptool.core.tables import EXPANSIONS
from looptool.engines import EngineError
from looptool.loop.expand.run import run_expand
from looptool.store.io import read_parquet, write_json_atomic, write_parquet_atomic
from stages._common import iteration_params, skip_static_stage
from stages._engines import open_engine, place_gpus


def main(argv: list[str] | None = None) -> None:
    params, j = iteration_params(argv)
    if skip_static_stage(
        params,
        j,
        f"data/iter_{j}/expansions.parquet",
        EXPANSIONS,
        f"data/iter_{j}/expand_metrics.json",
    ):
        return
    lp = params.loop
    try:
        dataset = read_parquet(f"data/iter_{j}/dataset.parquet")
        probe = read_parquet(f"data/iter_{j}/probe.parquet")
        verdicts = read_parquet(f"data/iter_{j}/verdicts.parquet")
        heldout = read_parquet("data/seed/heldout.parquet")
        place_gpus(params, "expand", j)
        generator = open_engine(params, params.engines.generator, "generator")
        verifier = None
        if lp.expand.llm_verify == "generator":
            verifier = generator
        elif lp.expand.llm_verify == "judge":
            # opened after the generator is done with and closed (one vLLM engine per process)
            verifier = partial(open_engine, params, params.engines.judge, "judge")
        res = run_expand(
            generator,
            verifier,
            dataset,
            probe,
            verdicts,
            iteration=j,
            date=params.project.date,
            params=lp,
            seed=params.project.seed,
            heldout=heldout,
        )
    except (FileNotFoundError, EngineError, ValueError) as exc:
        sys.exit(f"error: expand@{j}: {exc}")
    write_parquet_atomic(f"data/iter_{j}/expansions.parquet", res.table)
    write_json_atomic(f"data/iter_{j}/expand_metrics.json", {"iteration": j, **res.metrics})


if __name__ == "__main__":
    main()
