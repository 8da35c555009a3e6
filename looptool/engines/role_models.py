"""The judge's and generator's checkpoints as DVC dependencies, by content.

DVC takes no dependency from a params list or from an optional param, and does not
follow a symlink inside a folder dependency; it does follow a dependency path that is
itself a symlink or lies outside the repository, and its state database makes an
unchanged folder a stat per file. So every local checkpoint a role reads is listed by
name in ``engines.role_checkpoints.<role>`` (check_params keeps the lists equal to the
roles' specs: :mod:`looptool.params.tracked`), and dvc.yaml's ``<role>_checkpoint@<name>``
stage depends on its path and writes ``data/engines/<role>/<name>.json`` (the path and a
content fingerprint). The stages using the role depend on the folder
``data/engines/<role>/``: a changed checkpoint reruns its record stage, whose new
fingerprint makes them stale; a no-op ``dvc repro`` runs nothing. Checkpoints the pipeline
builds itself (``data/tiny_model``) are direct dependencies of the stages reading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from looptool.engines.checkpoint import check_model_dir, model_fingerprint
from looptool.params import Params

ROLE_MODELS_DIR = "data/engines"


def checkpoint_record(params: Params, role: str, name: str) -> dict[str, Any]:
    """The record of ``engines.role_checkpoints.<role>.<name>``: path and fingerprint."""
    listed = getattr(params.engines.role_checkpoints, role)
    if name not in listed:
        raise KeyError(f"engines.role_checkpoints.{role} has no entry {name!r}")
    key = f"engines.role_checkpoints.{role}.{name}"
    path = listed[name]
    return {
        "role": role,
        "name": name,
        "path": path,
        "fingerprint": model_fingerprint(check_model_dir(path, key)),
    }


def record_path(role: str, name: str) -> Path:
    """Where stage ``<role>_checkpoint@<name>`` writes its record."""
    return Path(ROLE_MODELS_DIR) / role / f"{name}.json"
