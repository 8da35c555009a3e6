"""DVC stage check_params: validate the whole params.yaml whenever it changes.

Its only dependencies are the whole file and the validation code, so any edit, even one
no other stage tracks (a typo such as `loop.dataset_sise`), runs it on the next
`dvc repro`, which then fails naming the key instead of silently doing nothing. Every
iteration's `overrides` are validated too, and an input named in params that no dvc.yaml
dependency covers (a tool file outside data/tools/, a warmstart.base_model other than
engines.policy.model, ...) is refused: see looptool/params/tracked.py.

python -m stages.check_params [--params params.yaml]
"""

from __future__ import annotations

import sys

from looptool.params import ParamsError
from looptool.params.tracked import untracked_inputs
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    params = stage_params(argv)  # exits with the error naming file and key
    try:
        for key in params.iterations:
            params.for_iteration(int(key))
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    if problems := untracked_inputs(params):
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        sys.exit(f"error: {params._source}: an input DVC would not track: {problems[0]}{more}")
    print(f"params valid: {len(params.iterations)} iteration(s)")


if __name__ == "__main__":
    main()
