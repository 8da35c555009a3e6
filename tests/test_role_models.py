"""The judge's and generator's checkpoints are DVC inputs by content, wherever they live (a
symlink in data/models/, a folder outside the repo): a stage that reads them goes stale
when their bytes change, and a no-op `dvc repro` runs no stage at all (issue #29: no
`always_changed` stage starting Python on every repro)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from looptool.engines.role_models import checkpoint_record
from looptool.params import load_params
from looptool.params.tracked import role_checkpoint_problems
from tests.test_dvc_inputs import BIN, REPO, _params, _run, _stale, repo  # noqa: F401 (fixture)


def _checkpoint(path: Path, weights: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "qwen3"}')
    (path / "model.safetensors").write_text(weights)
    return path


def _with(params, **engines):
    return params.model_copy(update={"engines": params.engines.model_copy(update=engines)})


def test_role_checkpoints_must_list_what_the_roles_read(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    assert role_checkpoint_problems(params) == []  # judge: data/tiny_model, built here
    ckpt = _checkpoint(tmp_path / "judge32b", "w1")
    judge = params.engines.judge.model_copy(update={"model": str(ckpt)})
    unlisted = _with(params, judge=judge)
    (problem,) = role_checkpoint_problems(unlisted)
    assert "engines.judge.model" in problem and "engines.role_checkpoints.judge" in problem
    listed = params.engines.role_checkpoints.model_copy(update={"judge": {"j32": str(ckpt)}})
    ok = _with(params, judge=judge, role_checkpoints=listed)
    assert role_checkpoint_problems(ok) == []
    first = checkpoint_record(ok, "judge", "j32")
    assert first["path"] == str(ckpt) and first["fingerprint"]
    (ckpt / "model.safetensors").write_text("w2")
    assert checkpoint_record(ok, "judge", "j32")["fingerprint"] != first["fingerprint"]
    (extra,) = role_checkpoint_problems(_with(params, role_checkpoints=listed))
    assert "engines.role_checkpoints.judge.j32" in extra and "no judge engine reads" in extra


def test_every_stage_using_a_role_depends_on_its_records() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    uses = {
        "seed_apis": ["generator"],
        "seed_dialogues": ["generator"],
        "seed_verify": ["judge"],
        "judge": ["judge"],
        "expand": ["judge", "generator"],
    }
    for name, roles in uses.items():
        deps = (stages[name].get("do") or stages[name])["deps"]
        for role in roles:
            assert f"data/engines/{role}" in deps, (name, role)
    assert not any(s.get("always_changed") for s in stages.values())


def _ran(stdout: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", stdout)


def test_edited_checkpoint_behind_a_symlink_or_outside_the_repo_makes_its_stages_stale(
    repo: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    outside = _checkpoint(tmp_path / "models" / "judge", "weights-1")
    link = repo / "data/models/judge"
    link.symlink_to(outside)  # what a user with a 64 GB checkpoint does
    second = _checkpoint(tmp_path / "models" / "voter", "voter-1")  # an absolute path

    def judge_at(p: dict) -> None:
        p["engines"]["judge"] = {"backend": "hf", "model": "data/models/judge", "batch_size": 4}
        p["loop"]["judge"]["models"] = [{"backend": "hf", "model": str(second)}]
        p["engines"]["role_checkpoints"]["judge"] = {
            "judge": "data/models/judge",
            "voter": str(second),
        }

    _params(repo, judge_at)
    dvc = str(BIN / "dvc")
    _run(repo, dvc, "repro", "seed_verify", "judge_checkpoint@voter")
    record = json.loads((repo / "data/engines/judge/judge.json").read_text())
    assert record["path"] == "data/models/judge" and record["fingerprint"]
    assert "seed_verify" not in _stale(repo)
    assert _ran(_run(repo, dvc, "repro", "seed_verify").stdout) == []  # nothing runs again
    (outside / "model.safetensors").write_text("weights-2")
    assert "judge_checkpoint@judge" in _stale(repo)
    _run(repo, dvc, "repro", "judge_checkpoint@judge")
    assert json.loads((repo / "data/engines/judge/judge.json").read_text()) != record
    assert "seed_verify" in _stale(repo)  # through the folder data/engines/judge
    _run(repo, dvc, "repro", "seed_verify")
    (second / "model.safetensors").write_text("voter-2")
    assert "judge_checkpoint@voter" in _stale(repo)
    _run(repo, dvc, "repro", "judge_checkpoint@voter")
    assert "seed_verify" in _stale(repo)
    # a judge checkpoint left out of the list is refused before any stage reads it
    _params(repo, lambda p: p["engines"]["role_checkpoints"]["judge"].pop("voter"))
    res = _run(repo, dvc, "repro", "check_params", ok=False)
    assert "loop.judge.models[0].model" in res.stderr + res.stdout
    _params(repo, lambda p: p["engines"]["role_checkpoints"]["judge"].update(voter=str(second)))
    link.unlink()
    shutil.rmtree(outside)
    res = _run(repo, dvc, "repro", "judge_checkpoint@judge", ok=False)
    assert "data/models/judge" in res.stderr + res.stdout
