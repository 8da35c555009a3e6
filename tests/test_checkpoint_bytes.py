"""The same training in two different directories gives byte-identical checkpoints (no
absolute path or timestamp inside a model output), so DVC hashes and model ids match
across clones and the request cache hits."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from test_train import DATE, SMOKE, synthetic_samples, write_samples
from test_warmstart import SFT

from looptool.engines.checkpoint import model_fingerprint
from looptool.loop.train import train_grpo
from looptool.loop.warmstart import train_sft


def file_hashes(model_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(model_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }


def _clone(tmp_path: Path, name: str, tiny_model_dir: Path) -> Path:
    """A checkout of its own: base model and data under a different absolute path."""
    root = tmp_path / name / "nested" / name
    shutil.copytree(tiny_model_dir, root / "data" / "tiny_model")
    return root


@pytest.mark.parametrize("kind", ["warmstart", "grpo"])
def test_training_twice_in_two_directories_gives_identical_bytes(
    tmp_path: Path, tiny_model_dir: Path, kind: str
) -> None:
    outs = []
    for name in ("clone_a", "b"):
        root = _clone(tmp_path, name, tiny_model_dir)
        base = root / "data" / "tiny_model"
        out = root / "data" / "iter_1" / "model"
        if kind == "warmstart":
            data = write_samples(
                root / "seed.parquet", synthetic_samples(16, seed=4), dataset=False
            )
            train_sft(data, base, out, SFT, date=DATE, scratch_root=root / ".cache")
        else:
            data = write_samples(root / "dataset.parquet", synthetic_samples(8, seed=1))
            train_grpo(data, base, out, SMOKE.model_copy(update={"max_steps": 2}), date=DATE,
                       scratch_root=root / ".cache", name="iter_1")  # fmt: skip
        outs.append(out)
    a, b = (file_hashes(o) for o in outs)
    assert "model.safetensors" in a and "training_args.bin" not in a
    assert a == b
    assert model_fingerprint(outs[0]) == model_fingerprint(outs[1])
    for path in outs[0].rglob("*"):  # no absolute path of the checkout inside any file
        assert str(outs[0].parents[3]).encode() not in path.read_bytes(), path
