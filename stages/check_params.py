"""DVC stage check_params: validate the whole params.yaml whenever it changes.

Its only dependencies are the whole file and the validation code, so any edit, even one
no other stage tracks (a typo such as `loop.dataset_sise`), runs it on the next
`dvc repro`, which then fails naming the key instead of silently doing nothing. Every
iteration's `overrides` are validated too, and every imported tool file must sit in
data/tools/ (the folder stage seed_apis depends on), so editing one makes seed_apis stale.

python -m stages.check_params [--params params.yaml]
"""

from __future__ import annotations

import sys

from looptool.params import ParamsError
from looptool.params.seed import untracked_import
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    params = stage_params(argv)  # exits with the error naming file and key
    try:
        for key in params.iterations:
            params.for_iteration(int(key))
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    for i, imp in enumerate(params.seed.apis.imports):
        if why := untracked_import(imp.path):
            sys.exit(f"error: params: seed.apis.imports[{i}].path: {why}; copy the file there")
    print(f"params valid: {len(params.iterations)} iteration(s)")


if __name__ == "__main__":
    main()
