"""``train.algorithm: noop`` (the dry run's training): a placeholder checkpoint of the
requested size, sparse where the filesystem allows, written in a temp folder and renamed
into place (a link into DVC's cache of the old checkpoint is never written through), with
the DVCLive files downstream stages and dvc.yaml expect."""

from __future__ import annotations

import json
import os
from pathlib import Path

from looptool.loop.train_noop import WEIGHTS, train_noop
from looptool.params.train import NoopParams

MB = 1 << 20


def _sparse_supported(where: Path) -> bool:
    probe = where / "sparse-probe"
    with open(probe, "wb") as fh:
        fh.truncate(64 * MB)
    ok = os.stat(probe).st_blocks * 512 < MB
    probe.unlink()
    return ok


def _run(tmp: Path, dataset: bytes, size: int, sparse: bool = True, start: Path | None = None):
    (tmp / "dataset.parquet").write_bytes(dataset)
    return train_noop(
        tmp / "dataset.parquet",
        start or tmp / "iter_0" / "model",
        tmp / "iter_1" / "model",
        NoopParams(checkpoint_bytes=size, sparse=sparse),
        live_dir=tmp / "iter_1" / "dvclive",
    )


def test_noop_writes_a_checkpoint_of_the_requested_size(tmp_path: Path) -> None:
    result = _run(tmp_path, b"D1", 64 * MB)
    model = tmp_path / "iter_1" / "model"
    weights = model / WEIGHTS
    assert weights.stat().st_size == 64 * MB
    assert result.metrics["checkpoint_bytes"] == 64 * MB and result.metrics["steps"] == 0
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "noop" and config["bytes"] == 64 * MB
    if _sparse_supported(tmp_path):
        assert weights.stat().st_blocks * 512 < MB
        assert result.metrics["sparse_on_disk"] is True
    live = tmp_path / "iter_1" / "dvclive"  # dvc.yaml's declared DVCLive outputs
    assert json.loads((live / "metrics.json").read_text())["step"] == 0
    assert (live / "params.yaml").is_file() and (live / "plots" / "metrics").is_dir()
    assert [p.name for p in (tmp_path / "iter_1").iterdir() if p.name.startswith(".")] == []


def test_noop_dense_writes_every_byte(tmp_path: Path) -> None:
    result = _run(tmp_path, b"D1", 3 * MB + 5, sparse=False)
    weights = tmp_path / "iter_1" / "model" / WEIGHTS
    assert weights.stat().st_size == 3 * MB + 5
    assert result.metrics["allocated_bytes"] >= 3 * MB
    assert result.metrics["sparse_on_disk"] is False


def test_noop_replaces_the_checkpoint_atomically_and_never_in_place(tmp_path: Path) -> None:
    _run(tmp_path, b"D1", MB)
    weights = tmp_path / "iter_1" / "model" / WEIGHTS
    cached = tmp_path / "cache-object"
    os.link(weights, cached)  # what DVC's hardlink cache makes of the output
    before = cached.read_bytes()
    _run(tmp_path, b"D1 changed", MB)  # a retrain on other data
    assert cached.read_bytes() == before  # the cached copy is untouched
    assert not os.path.samefile(cached, weights)
    assert weights.read_bytes()[:4096] != before[:4096]  # new bytes: DVC sees a new hash
    _run(tmp_path, b"D1", MB)  # the same inputs give the same bytes (same DVC hash)
    assert weights.read_bytes() == before


def test_noop_header_follows_the_starting_checkpoint(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, header in ((a, b"x"), (b, b"y")):
        d.mkdir()
        (d / WEIGHTS).write_bytes(header * 4096)
    _run(tmp_path, b"D", MB, start=a)
    first = (tmp_path / "iter_1" / "model" / WEIGHTS).read_bytes()[:4096]
    _run(tmp_path, b"D", MB, start=b)
    assert (tmp_path / "iter_1" / "model" / WEIGHTS).read_bytes()[:4096] != first
