"""Checkpoints stored once (#29): under the repository's DVC cache type a checkpoint output
is linked into the workspace, not copied; a retrain replaces it without writing into the
cached copy; `looptool gc --keep-last N` drops older ones and `dvc repro` rebuilds them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from looptool.cli import main

REPO = Path(__file__).resolve().parents[1]


def _dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _cache_type() -> str:
    from configobj import ConfigObj

    return ConfigObj(str(REPO / ".dvc/config"))["cache"]["type"]


def _init(root: Path) -> None:
    _dvc(root, "init", "--no-scm", "-q")
    _dvc(root, "config", "cache.type", _cache_type())  # the repository's cache type


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cache_path(root: Path, md5: str) -> Path:
    return root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


def _bytes_on_disk(*dirs: Path) -> int:
    """Blocks used under ``dirs``, every inode (hardlinks) counted once."""
    seen: dict[tuple[int, int], int] = {}
    for d in dirs:
        for p in d.rglob("*"):
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def test_repository_links_checkpoints_with_a_copy_fallback():
    types = _cache_type().split(",")
    assert types[0] == "hardlink" and types[-1] == "copy"


@pytest.fixture
def warmstart_repo(tmp_path, tiny_model_dir):
    """A DVC project running the real `warmstart` stage (warm start off: the base model
    re-saved with save_pretrained) into data/iter_0/model."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["engines"]["policy"]["model"] = str(tiny_model_dir)
    params["project"]["cache_dir"] = str(tmp_path / "cache")
    params["warmstart"].update(enabled=False, heldout_check=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = {
        "cmd": f"{sys.executable} -m stages.warmstart",
        "params": ["engines.policy.model", "warmstart.enabled"],
        "outs": ["data/iter_0/model", "data/iter_0/warmstart_samples.parquet"],
        "metrics": [{"data/iter_0/warmstart_metrics.json": {"cache": False}}],
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"warmstart": stage}}))
    _init(tmp_path)
    return tmp_path


def test_checkpoint_is_linked_not_copied_and_a_retrain_leaves_the_cache_intact(
    warmstart_repo, tmp_path_factory
):
    from looptool.loop.tiny_model import build_tiny_model

    root = warmstart_repo
    model = root / "data/iter_0/model"
    _dvc(root, "repro", "-q")
    first = {p.relative_to(model): _md5(p) for p in _files(model)}
    for p in _files(model):
        cached = _cache_path(root, first[p.relative_to(model)])
        # one inode for the workspace file and its cache object: linked, not copied
        assert os.path.samefile(p, cached), p
        assert p.stat().st_nlink == 2
    weights = model / "model.safetensors"
    size = sum(p.stat().st_size for p in _files(model))
    # the checkpoint takes its size once on disk, not twice (workspace + cache)
    assert _bytes_on_disk(model, root / ".dvc/cache") < 1.2 * size
    old_weights = _cache_path(root, first[Path("model.safetensors")])
    old_inode = old_weights.stat().st_ino

    # retrain: other base weights, so an in-place write would change the cached copy
    other = build_tiny_model(tmp_path_factory.mktemp("other"), seed=1)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["engines"]["policy"]["model"] = str(other)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc(root, "repro", "-q")
    assert _md5(weights) != first[Path("model.safetensors")]
    # every object of the first checkpoint is still in the cache, unchanged
    for rel, md5 in first.items():
        assert _md5(_cache_path(root, md5)) == md5, rel
    assert old_weights.stat().st_ino == old_inode and old_weights.stat().st_nlink == 1
    # the new objects (the weights) are linked; a file identical to an object the cache
    # already held (tokenizer, config) stays a copy: DVC never relinks a copy while `copy`
    # is among the cache types (dvc_data's _needs_relink)
    for p in _files(model):
        linked = os.path.samefile(p, _cache_path(root, _md5(p)))
        assert linked or _md5(p) in first.values(), p
    assert os.path.samefile(weights, _cache_path(root, _md5(weights)))
    _dvc(root, "checkout", "-q", "--relink")  # links those as well (README)
    for p in _files(model):
        assert os.path.samefile(p, _cache_path(root, _md5(p))), p


def _fingerprint_cmd() -> str:
    code = (
        "import sys; from looptool.engines.checkpoint import model_fingerprint as f; "
        "open(sys.argv[2], 'w').write(f(sys.argv[1]))"
    )
    return f'{sys.executable} -c "{code}"'


@pytest.fixture
def three_iterations(tmp_path):
    """Checkpoints data/iter_{0,1,2}/model (the tiny model builder, one seed each) and a
    table per iteration computed from its checkpoint."""
    pipeline = {
        "stages": {
            "train": {
                "foreach": [0, 1, 2],
                "do": {
                    # the library call a stage makes (the CLI refuses DVC-tracked paths)
                    "cmd": f"{sys.executable} -c "
                    '"import sys; from looptool.loop.tiny_model import build_tiny_model; '
                    'build_tiny_model(sys.argv[1], seed=int(sys.argv[2]))" '
                    "data/iter_${item}/model ${item}",
                    "outs": ["data/iter_${item}/model"],
                },
            },
            "probe": {
                "foreach": [0, 1, 2],
                "do": {
                    "cmd": _fingerprint_cmd() + " data/iter_${item}/model data/iter_${item}/fp.txt",
                    "deps": ["data/iter_${item}/model"],
                    "outs": ["data/iter_${item}/fp.txt"],
                },
            },
        }
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    _init(tmp_path)
    _dvc(tmp_path, "repro", "-q")
    return tmp_path


def test_gc_keep_last_drops_older_checkpoints_and_repro_rebuilds_them(three_iterations):
    root = three_iterations
    lock = (root / "dvc.lock").read_text()
    models = [root / f"data/iter_{j}/model" for j in range(3)]
    objects = {j: {_md5(p) for p in _files(m)} for j, m in enumerate(models)}
    shared = objects[0] & objects[2]  # e.g. the tokenizer: the same in every checkpoint
    assert shared and objects[0] - objects[2]
    fp_mtime = (root / "data/iter_0/fp.txt").stat().st_mtime_ns

    dry = CliRunner().invoke(main, ["gc", "--keep-last", "1", "--root", str(root), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would drop data/iter_0/model (train@0), data/iter_1/model (train@1)" in dry.output
    assert all(m.is_dir() for m in models)

    res = CliRunner().invoke(main, ["gc", "--keep-last", "1", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "keeping data/iter_2/model" in res.output
    assert not models[0].exists() and not models[1].exists() and models[2].is_dir()
    for md5 in (objects[0] | objects[1]) - objects[2]:
        assert not _cache_path(root, md5).exists()
    for md5 in objects[2]:  # the kept checkpoint, shared objects included
        assert _cache_path(root, md5).exists()
    # dvc.lock and every other output keep each iteration's record
    assert (root / "dvc.lock").read_text() == lock
    assert all((root / f"data/iter_{j}/fp.txt").is_file() for j in range(3))

    # --allow-missing goes on without the dropped checkpoints ...
    _dvc(root, "repro", "-q", "--allow-missing")
    assert not models[0].exists() and not models[1].exists()
    # ... a plain repro rebuilds them, to the hashes dvc.lock kept
    _dvc(root, "repro", "-q")
    assert {_md5(p) for p in _files(models[0])} == objects[0]
    assert {_md5(p) for p in _files(models[1])} == objects[1]
    assert (root / "dvc.lock").read_text() == lock
    # the same hash: the stages reading the checkpoint did not run again
    assert (root / "data/iter_0/fp.txt").stat().st_mtime_ns == fp_mtime
    assert "up to date" in _dvc(root, "status")
    for m in models[:2]:  # rebuilt weights are linked again (their objects were dropped)
        weights = m / "model.safetensors"
        assert os.path.samefile(weights, _cache_path(root, _md5(weights)))


def test_gc_bad_input_and_refusal_are_one_line(tmp_path):
    root = tmp_path
    (root / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: mkdir -p data/iter_0/model\n    outs: [data/iter_0/model]\n"
    )
    _init(root)
    _dvc(root, "repro", "-q")
    res = CliRunner().invoke(main, ["gc", "--keep-last", "0", "--root", str(root)])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "--keep-last 0" in res.output
    # a stage running right now (DVC lists its PID in .dvc/tmp/rwlock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rw = {"write": {"data/iter_0/model": {"pid": sleeper.pid, "cmd": "dvc repro"}}, "read": {}}
        (root / ".dvc/tmp/rwlock").write_text(json.dumps(rw))
        res = CliRunner().invoke(main, ["gc", "--keep-last", "1", "--root", str(root)])
        assert res.exit_code == 1 and f"a repro is running: PID {sleeper.pid}" in res.output
        assert res.output.count("\n") == 1 and (root / "data/iter_0/model").is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()


def _linked_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """data/iter_1/model whose weights are a hardlink to a cache object (as DVC leaves it)."""
    obj = tmp_path / "cache/ab/cdef"
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"old weights")
    obj.chmod(0o444)
    model = tmp_path / "data/iter_1/model"
    model.mkdir(parents=True)
    os.link(obj, model / "model.safetensors")
    return model, obj


def test_saving_a_retrained_checkpoint_never_writes_into_the_linked_one(tmp_path):
    from types import SimpleNamespace

    from looptool.loop.train_setup import save_checkpoint_atomic
    from looptool.store.io import atomic_dir

    class Trainer:  # what save_checkpoint_atomic uses of a transformers Trainer
        args = SimpleNamespace(bf16=False, fp16=False)
        is_deepspeed_enabled = is_fsdp_enabled = False
        accelerator = SimpleNamespace(wait_for_everyone=lambda: None)

        def save_model(self, path):
            Path(path).mkdir(parents=True, exist_ok=True)
            Path(path, "model.safetensors").write_bytes(b"new weights, retrained")

    model, obj = _linked_checkpoint(tmp_path)
    save_checkpoint_atomic(Trainer(), model)  # train@j, warm start SFT
    assert (model / "model.safetensors").read_bytes() == b"new weights, retrained"
    assert obj.read_bytes() == b"old weights" and obj.stat().st_nlink == 1

    shutil.rmtree(tmp_path / "cache")
    model, obj = _linked_checkpoint(tmp_path / "again")
    with atomic_dir(model) as tmp:  # build_tiny_model, import_model
        (tmp / "model.safetensors").write_bytes(b"imported")
    assert (model / "model.safetensors").read_bytes() == b"imported"
    assert obj.read_bytes() == b"old weights" and obj.stat().st_nlink == 1
