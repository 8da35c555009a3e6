"""What the judge and generator roles read, as content: one JSON per role for DVC.

DVC cannot take a dependency from an optional param (a template or openai role has no
model directory) nor follow a symlinked checkpoint inside a folder dependency, so stage
``role_models`` (always run, cheap) writes ``data/engines/<role>.json`` holding every
spec the role uses and a content fingerprint of each local checkpoint. Stages depend on
that file: it changes, and they rerun, exactly when a model's bytes or spec change.
Checkpoints the pipeline builds itself (``data/tiny_model``) are tracked by a direct
dependency instead: they do not exist yet when the seed stages run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from looptool.engines.checkpoint import check_model_dir, model_fingerprint
from looptool.params import Params
from looptool.params.engines import EngineSpec
from looptool.params.tracked import norm_path

ROLE_MODELS_DIR = "data/engines"
# Built by stage build_tiny_model from the seed samples; judge/expand depend on it directly.
PIPELINE_MODELS = ("data/tiny_model",)
ROLES = ("judge", "generator")


def _pipeline_built(path: str) -> bool:
    return any(norm_path(path).is_relative_to(m) for m in PIPELINE_MODELS)


def _local_dir(spec: EngineSpec, field: str, param: str) -> dict[str, Any] | None:
    path = getattr(spec, field)
    if spec.backend not in ("hf", "vllm") or not path:
        return None
    if _pipeline_built(path):
        return {"path": path, "tracked_by": f"dvc.yaml dependency on {path}"}
    return {"path": path, "fingerprint": model_fingerprint(check_model_dir(path, param))}


def role_record(params: Params, role: str) -> dict[str, Any]:
    """Every engine spec ``role`` uses (judge: also the majority-vote models) with a
    content fingerprint of each local checkpoint it names."""
    specs = [(f"engines.{role}", params.engines.role(role))]
    if role == "judge":
        specs += [(f"loop.judge.models[{i}]", s) for i, s in enumerate(params.loop.judge.models)]
    out = []
    for param, spec in specs:
        entry: dict[str, Any] = {"param": param, "spec": spec.model_dump(mode="json")}
        for field in ("model", "tokenizer"):
            if (local := _local_dir(spec, field, f"{param}.{field}")) is not None:
                entry[field] = local
        out.append(entry)
    return {"role": role, "engines": out}


def role_model_path(role: str) -> Path:
    """Where stage role_models writes ``role``'s record."""
    return Path(ROLE_MODELS_DIR) / f"{role}.json"
