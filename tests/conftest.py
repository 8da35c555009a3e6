"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests `dvc init` scratch repositories, whose config has analytics on: DVC would then
# start a daemon that tries to reach its analytics host. Nothing here may use the network.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen3 (tokenizer + weights) built once per test session (~3 s)."""
    from looptool.loop.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)
