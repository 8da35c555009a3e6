"""Every input a stage reads is a DVC dependency: imported tool files (data/tools/) and
the tree files named in params make seed_apis stale when edited; check_params refuses an
import outside data/tools/ and names an unknown params key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOL = {"name": "get_tide", "description": "Tide times.",
        "parameters": {"type": "object", "properties": {"port": {"type": "string"}}}}  # fmt: skip


def _run(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "LOOPTOOL_CACHE_DIR": str(root / ".cache" / "looptool")}  # fmt: skip
    res = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert (res.returncode == 0) == ok, f"{args}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


def _params(root: Path, edit) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _stale(root: Path) -> dict:
    return json.loads(_run(root, str(BIN / "dvc"), "status", "--json").stdout or "{}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline definition, code and sources in a fresh DVC repo; seed_apis built."""
    root = tmp_path_factory.mktemp("inputs") / "repo"
    for rel in ("dvc.yaml", "params.yaml", ".dvcignore", "stages", "looptool", "data/trees",
                "data/tools", "data/models", "data/engines"):  # fmt: skip
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, root / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    (root / "data/tools/tides.json").write_text(json.dumps([TOOL]))

    def small(p: dict) -> None:
        p["seed"]["apis"]["n_draws"] = 4
        p["seed"]["apis"]["imports"] = [{"path": "data/tools/tides.json"}]

    _params(root, small)
    _run(root, str(BIN / "dvc"), "init", "--no-scm", "-q")
    _run(root, str(BIN / "dvc"), "repro", "check_params", "seed_apis")
    return root


def test_edited_import_file_makes_seed_apis_stale(repo: Path) -> None:
    assert "seed_apis" not in _stale(repo)
    metrics = json.loads((repo / "data/seed/apis_metrics.json").read_text())
    assert metrics["imported"] == 1
    tool = dict(TOOL, description="Tide times for a port.")
    (repo / "data/tools/tides.json").write_text(json.dumps([tool]))
    stale = _stale(repo)
    assert "seed_apis" in stale and "data/tools" in json.dumps(stale["seed_apis"])
    _run(repo, str(BIN / "dvc"), "repro", "seed_apis")
    assert "seed_apis" not in _stale(repo)


def test_edited_tree_file_named_in_params_makes_seed_apis_stale(repo: Path) -> None:
    tree = repo / "data/trees/context_tree.yaml"
    original = tree.read_text()
    tree.write_text(original + "\n# edited\n")
    try:
        assert "data/trees/context_tree.yaml" in json.dumps(_stale(repo).get("seed_apis"))
    finally:
        tree.write_text(original)
    assert "seed_apis" not in _stale(repo)


def test_check_params_names_typos_and_untracked_imports(repo: Path) -> None:
    good = (repo / "params.yaml").read_text()
    try:
        _params(repo, lambda p: p["loop"].update(dataset_sise=5))
        res = _run(repo, str(BIN / "dvc"), "repro", "check_params", ok=False)
        assert "loop.dataset_sise: unknown key" in res.stdout + res.stderr
        (repo / "params.yaml").write_text(good)
        outside = repo / "tools_elsewhere.json"
        outside.write_text(json.dumps([TOOL]))
        _params(repo, lambda p: p["seed"]["apis"]["imports"].append({"path": str(outside)}))
        res = _run(repo, str(BIN / "dvc"), "repro", "check_params", ok=False)
        assert "seed.apis.imports[1].path" in res.stdout + res.stderr
        assert "not inside data/tools/" in res.stdout + res.stderr
    finally:
        (repo / "params.yaml").write_text(good)


def test_untracked_inputs_are_named() -> None:
    from looptool.params import load_params
    from looptool.params.tracked import untracked_inputs

    for profile in ("params.yaml", "params.gpu.yaml", "params.smol.yaml"):
        assert untracked_inputs(load_params(REPO / profile)) == [], profile
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["seed"]["apis"]["imports"] = [{"path": "data/tools/ok.json"}, {"path": "/tmp/x.json"},
                                      {"path": "data/tools/../x.json"}]  # fmt: skip
    raw["warmstart"]["base_model"] = "/models/other"
    raw["engines"]["tiny_model"]["corpus"] = "data/iter_1/dataset.parquet"
    from looptool.params import Params

    problems = untracked_inputs(Params.model_validate(raw))
    assert [p.split(":")[0] for p in problems] == [
        "seed.apis.imports[1].path", "seed.apis.imports[2].path", "warmstart.base_model",
        "engines.tiny_model.corpus",
    ]  # fmt: skip
