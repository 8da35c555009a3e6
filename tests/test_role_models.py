"""Stage role_models: the judge's and generator's checkpoints are DVC inputs by content,
wherever they live (a user's folder outside the repo, a symlink), and a stage that reads
them goes stale when their bytes change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from looptool.engines.role_models import role_record
from looptool.params import load_params
from tests.test_dvc_inputs import BIN, _params, _run, _stale, repo  # noqa: F401 (fixture)


def _checkpoint(path: Path, weights: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "qwen3"}')
    (path / "model.safetensors").write_text(weights)
    return path


def test_record_fingerprints_local_checkpoints_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    params = load_params("params.yaml")
    judge = role_record(params, "judge")
    # CPU default: the judge is the pipeline-built tiny model (a direct dependency instead)
    assert judge["engines"][0]["model"] == {
        "path": "data/tiny_model",
        "tracked_by": "dvc.yaml dependency on data/tiny_model",
    }
    assert "model" not in role_record(params, "generator")["engines"][0]  # template backend
    ckpt = _checkpoint(tmp_path / "judge32b", "w1")
    spec = params.engines.judge.model_copy(update={"model": str(ckpt)})
    other = params.model_copy(update={"engines": params.engines.model_copy(update={"judge": spec})})
    first = role_record(other, "judge")["engines"][0]["model"]["fingerprint"]
    (ckpt / "model.safetensors").write_text("w2")
    assert role_record(other, "judge")["engines"][0]["model"]["fingerprint"] != first


def test_edited_judge_checkpoint_outside_the_repo_makes_its_stages_stale(
    repo: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    outside = _checkpoint(tmp_path / "models" / "judge", "weights-1")
    link = repo / "data/models/judge"
    link.symlink_to(outside)  # what a user with a 64 GB checkpoint does

    def judge_at(p: dict) -> None:
        p["engines"]["judge"] = {"backend": "hf", "model": "data/models/judge", "batch_size": 4}

    _params(repo, judge_at)
    _run(repo, str(BIN / "dvc"), "repro", "role_models", "seed_verify")
    record = json.loads((repo / "data/engines/judge.json").read_text())
    assert record["engines"][0]["model"]["fingerprint"]
    assert "seed_verify" not in _stale(repo)
    # `dvc status` lists role_models (always changed); `looptool status` does not call it stale
    from looptool.store.status import dvc_status

    assert dvc_status(repo).stale.get("role_models") is None
    (outside / "model.safetensors").write_text("weights-2")
    _run(repo, str(BIN / "dvc"), "repro", "role_models")
    assert json.loads((repo / "data/engines/judge.json").read_text()) != record
    assert "seed_verify" in _stale(repo)
    link.unlink()
    shutil.rmtree(outside)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["engines"]["judge"]["model"] == "data/models/judge"
    res = _run(repo, str(BIN / "dvc"), "repro", "role_models", ok=False)
    assert "engines.judge.model: path does not exist: data/models/judge" in res.stderr + res.stdout
