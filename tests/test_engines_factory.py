"""EngineSpec validation and make_engine's errors (no model needed)."""

from __future__ import annotations

import importlib.util

import pytest
from pydantic import ValidationError

from looptool.engines import EngineError, make_engine, model_fingerprint
from looptool.params.engines import EnginesParams, EngineSpec


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_missing_model_path_names_the_param(backend, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(
        EngineError, match=rf"^engines.policy.model: path does not exist: {missing}$"
    ):
        make_engine(EngineSpec(backend=backend, model=str(missing)), "policy")


def test_path_that_is_not_a_checkpoint(tmp_path):
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(EngineError, match="engines.judge.model: not a directory"):
        make_engine(EngineSpec(backend="hf", model=str(f)), "judge")
    with pytest.raises(EngineError, match="engines.judge.model: no config.json"):
        make_engine(EngineSpec(backend="hf", model=str(tmp_path)), "judge")


def test_spec_validation_messages():
    with pytest.raises(ValidationError, match="needs `model`"):
        EngineSpec(backend="hf")
    with pytest.raises(ValidationError, match="needs `base_url`"):
        EngineSpec(backend="openai", model="m")
    with pytest.raises(ValidationError, match="data_parallel_size > 1"):
        EngineSpec(backend="vllm", model="x", data_parallel_size=2)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EngineSpec(backend="hf", model="x", modle="typo")
    with pytest.raises(KeyError, match="unknown engine role"):
        EnginesParams().role("critic")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm installed")
def test_vllm_without_the_extra_is_a_clear_error(tiny_model_dir):
    with pytest.raises(EngineError, match=r"needs the gpu extra"):
        make_engine(EngineSpec(backend="vllm", model=str(tiny_model_dir)), "policy")


def test_fingerprint_follows_content(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 100)
    a = model_fingerprint(d)
    (d / ".cache").mkdir()
    (d / ".cache" / "lock").write_text("x")  # hidden scratch files do not count
    assert model_fingerprint(d) == a
    (d / "model.safetensors").write_bytes(b"\0" * 99 + b"\1")
    assert model_fingerprint(d) != a
