"""The shipped parameter profiles (CPU default, smol, GPU) validate and give the DAG a user
expects: `cp params.<profile>.yaml params.yaml && dvc repro` must not fail on a typo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from looptool.params import load_params

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).parent / "dvc")
PROFILES = [
    "params.yaml",
    "params.smol.yaml",
    "params.gpu.yaml",
    "params.compare.yaml",
    "params.gpu-check.yaml",  # scripts/gpu_check.sh
    "params.paper-scale.yaml",  # bench/paper_scale.py
]


def _stage_names(profile: str, tmp_path: Path) -> set[str]:
    """Stage names DVC resolves from dvc.yaml with ``profile`` as params.yaml."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / profile, tmp_path / "params.yaml")
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    res = subprocess.run(
        [DVC, "stage", "list", "--name-only", "--fail"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split())


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_validates_and_resolves_in_dvc(profile: str, tmp_path: Path) -> None:
    params = load_params(REPO / profile)
    names = _stage_names(profile, tmp_path)
    js = sorted(item.j for item in params.iterations.values())
    for stage in ("train", "probe", "judge", "expand", "compose", "eval"):
        assert {f"{stage}@{j}" for j in js} <= names, (profile, stage, sorted(names))
    imports = {n for n in names if n.startswith("import_model@")}
    assert imports == {f"import_model@{name}" for name in params.engines.imports}


def test_smol_profile_uses_the_converted_model_in_every_loop_role() -> None:
    params = load_params(REPO / "params.smol.yaml")
    (imp,) = params.engines.imports.values()
    for role in ("policy", "judge", "generator"):
        spec = getattr(params.engines, role)
        assert spec.backend == "hf" and spec.model == imp.out, role
    # A 135M judge's verdict comes from scored options, never from free text alone.
    assert params.loop.judge.extraction == "choose"
    assert params.loop.expand.llm_verify != "off"
    assert params.warmstart.enabled and params.warmstart.base_model is None


def test_cpu_default_has_no_imports_and_stays_tiny() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.engines.imports == {}
    assert params.engines.policy.model == params.engines.tiny_model.out


@pytest.mark.parametrize("profile", PROFILES)
def test_every_param_a_stage_tracks_is_in_the_profile(profile: str) -> None:
    """`dvc repro` refuses a stage whose tracked param is missing from params.yaml, so a
    profile copied over params.yaml must hold every key dvc.yaml names."""
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    keys = {
        p
        for stage in stages.values()
        for p in stage.get("do", stage).get("params", [])
        if isinstance(p, str) and "${" not in p
    }
    raw = yaml.safe_load((REPO / profile).read_text())

    def has(key: str) -> bool:
        node = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    assert sorted(k for k in keys if not has(k)) == [], profile
