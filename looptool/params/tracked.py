"""Inputs named in params.yaml that dvc.yaml must track as dependencies.

DVC cannot take a dependency from a params list or from an optional (null) param, so a
few inputs are tracked through a fixed place instead; stage check_params refuses params
that would make a stage read a file DVC does not see change.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath

from looptool.params import Params

# Imported tool files live here: stage seed_apis depends on the whole folder.
TOOLS_DIR = "data/tools"
# build_tiny_model depends on this table (the only corpus it may read besides its own chats).
TINY_MODEL_CORPUS = "data/seed/samples.parquet"


def norm_path(path: str) -> PurePosixPath:
    """``path`` as a normalized POSIX path (``./a//b/`` and ``a\\b`` compare equal to ``a/b``)."""
    return PurePosixPath(posixpath.normpath(path.replace("\\", "/")))


def untracked_inputs(params: Params) -> list[str]:
    """One message per params-named input that no dvc.yaml dependency covers."""
    problems = []
    tools = PurePosixPath(TOOLS_DIR)
    for i, imp in enumerate(params.seed.apis.imports):
        for key, value in (("path", imp.path), ("answers", imp.answers)):
            p = norm_path(value) if value is not None else None
            if p is not None and (
                p.is_absolute() or len(p.parts) <= len(tools.parts) or not p.is_relative_to(tools)
            ):
                problems.append(
                    f"seed.apis.imports[{i}].{key}: {value!r} is not inside {TOOLS_DIR}/, the "
                    "folder stage seed_apis depends on; copy the file there"
                )
    base = params.warmstart.base_model
    if base is not None and norm_path(base) != norm_path(params.engines.policy.model or ""):
        problems.append(
            f"warmstart.base_model: {base!r} would be read untracked (stage warmstart depends "
            "on engines.policy.model); set engines.policy.model to it and base_model to null"
        )
    corpus = params.engines.tiny_model.corpus
    if corpus is not None and norm_path(corpus) != PurePosixPath(TINY_MODEL_CORPUS):
        problems.append(
            f"engines.tiny_model.corpus: {corpus!r} would be read untracked (stage "
            f"build_tiny_model depends on {TINY_MODEL_CORPUS}); use that or null"
        )
    return problems
