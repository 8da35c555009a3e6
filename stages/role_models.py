"""DVC stages judge_checkpoint@<name> / generator_checkpoint@<name>: the record of one
checkpoint listed in ``engines.role_checkpoints`` (data/engines/<role>/<name>.json: its
path and content fingerprint). DVC reruns it only when the checkpoint's bytes change (the
path is the stage's dependency); the stages using the role depend on the folder. See
looptool/engines/role_models.py.

python -m stages.role_models --role judge --name NAME [--params params.yaml]
"""

from __future__ import annotations

import argparse
import sys

from looptool.engines.base import EngineError
from looptool.engines.role_models import checkpoint_record, record_path
from looptool.store.io import write_json_atomic
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=("judge", "generator"), required=True)
    parser.add_argument("--name", required=True)
    args, rest = parser.parse_known_args(argv)
    params = stage_params(rest)
    try:
        record = checkpoint_record(params, args.role, args.name)
    except (EngineError, KeyError) as exc:
        sys.exit(f"error: {exc}")
    write_json_atomic(record_path(args.role, args.name), record)
    print(f"{args.role} checkpoint {args.name}: {record['path']} {record['fingerprint']}")


if __name__ == "__main__":
    main()
