"""DVC stage role_models: write data/engines/<role>.json for the judge and generator.

Always runs (``always_changed``) and is cheap (checkpoints above 8 MB are fingerprinted
by size and sampled blocks). DVC compares the files by content, so stages depending on
them rerun only when a model they read changed. See looptool/engines/role_models.py.

python -m stages.role_models [--params params.yaml]
"""

from __future__ import annotations

import sys

from looptool.engines.base import EngineError
from looptool.engines.role_models import ROLES, role_model_path, role_record
from looptool.store.io import write_json_atomic
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    params = stage_params(argv)
    for role in ROLES:
        try:
            record = role_record(params, role)
        except EngineError as exc:
            sys.exit(f"error: {exc}")
        write_json_atomic(role_model_path(role), record)
        models = [e["model"]["path"] for e in record["engines"] if "model" in e]
        print(f"{role}: {len(record['engines'])} engine(s); local models: {models or 'none'}")


if __name__ == "__main__":
    main()
