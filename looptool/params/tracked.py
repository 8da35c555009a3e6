"""Inputs named in params.yaml that dvc.yaml must track as dependencies.

DVC cannot take a dependency from a params list or from an optional (null) param, so a
few inputs are tracked through a fixed place instead (imported tool files in data/tools/,
the judge's and generator's checkpoints listed in ``engines.role_checkpoints``); stage
check_params refuses params that would make a stage read a file DVC does not see change.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath

from looptool.params import Params

# Imported tool files live here: stage seed_apis depends on the whole folder.
TOOLS_DIR = "data/tools"
# build_tiny_model depends on this table (the only corpus it may read besides its own chats).
TINY_MODEL_CORPUS = "data/seed/samples.parquet"
# Checkpoints the pipeline builds itself: the stages using them depend on them directly.
PIPELINE_MODELS = ("data/tiny_model",)
ROLES = ("judge", "generator")


def norm_path(path: str) -> PurePosixPath:
    """``path`` as a normalized POSIX path (``./a//b/`` and ``a\\b`` compare equal to ``a/b``)."""
    return PurePosixPath(posixpath.normpath(path.replace("\\", "/")))


def pipeline_built(path: str) -> bool:
    """Whether ``path`` is (inside) a checkpoint the pipeline builds (a direct dependency)."""
    return any(norm_path(path).is_relative_to(m) for m in PIPELINE_MODELS)


def role_checkpoint_paths(params: Params, role: str) -> list[tuple[str, str]]:
    """(params key, path) of every local checkpoint folder ``role`` reads that the
    pipeline does not build: hf/vllm ``model`` and ``tokenizer`` of engines.<role> (the
    judge: also of loop.judge.models)."""
    specs = [(f"engines.{role}", params.engines.role(role))]
    if role == "judge":
        specs += [(f"loop.judge.models[{i}]", s) for i, s in enumerate(params.loop.judge.models)]
    out = []
    for key, spec in specs:
        if spec.backend not in ("hf", "vllm"):
            continue
        for field in ("model", "tokenizer"):
            path = getattr(spec, field)
            if path and not pipeline_built(path):
                out.append((f"{key}.{field}", path))
    return out


def role_checkpoint_problems(params: Params) -> list[str]:
    """A message per local judge/generator checkpoint missing from
    ``engines.role_checkpoints.<role>`` (DVC would not see it change), and per entry no
    engine of the role reads (DVC would depend on it for nothing)."""
    problems = []
    for role in ROLES:
        listed = getattr(params.engines.role_checkpoints, role)
        have = {norm_path(v) for v in listed.values()}
        used = role_checkpoint_paths(params, role)
        for key, path in used:
            if norm_path(path) not in have:
                name = norm_path(path).name or "model"
                problems.append(
                    f"{key}: {path!r} is a checkpoint the {role} reads; list it in "
                    f"engines.role_checkpoints.{role} (e.g. {{{name}: {path}}}) so DVC "
                    "tracks its content"
                )
        needed = {norm_path(p) for _, p in used}
        for name, path in listed.items():
            if norm_path(path) not in needed:
                problems.append(
                    f"engines.role_checkpoints.{role}.{name}: no {role} engine reads "
                    f"{path!r}; remove it (a stage would depend on it for nothing)"
                )
    return problems


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
    return problems + role_checkpoint_problems(params)
