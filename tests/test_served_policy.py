"""An openai-backend policy is tied to its checkpoint: the cache identity carries the
checkpoint's content hash, and a server not serving iteration j's checkpoint is refused."""

from __future__ import annotations

import pytest

import looptool.engines.served as served
from looptool.engines import EngineError, make_engine
from looptool.eval.policy import policy_spec
from looptool.params.engines import EngineSpec

URL = "http://127.0.0.1:9/v1"


def _checkpoint(path, weights: bytes):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def _spec(**kw) -> EngineSpec:
    return EngineSpec(backend="openai", model="policy", base_url=URL, **kw)


def test_policy_spec_names_the_iterations_checkpoint(tmp_path):
    assert policy_spec(_spec(), tmp_path / "iter_2" / "model").checkpoint == str(
        tmp_path / "iter_2" / "model"
    )
    assert _spec().checkpoint is None  # generators and judges are not tied to a checkpoint


def test_cache_identity_changes_with_the_checkpoint_content(tmp_path, monkeypatch):
    ck = _checkpoint(tmp_path / "iter_1" / "model", b"weights one")
    monkeypatch.setattr(
        served, "served_models", lambda spec: [{"id": "policy", "root": spec.checkpoint}]
    )
    first = make_engine(_spec(checkpoint=str(ck)), "policy").model_id
    assert first.startswith(f"policy@{URL}+ckpt@")
    assert make_engine(_spec(checkpoint=str(ck)), "policy").model_id == first
    (ck / "model.safetensors").write_bytes(b"weights two")  # iteration 2 retrained it
    second = make_engine(_spec(checkpoint=str(ck)), "policy").model_id
    assert second != first and make_engine(_spec(), "policy").model_id == f"policy@{URL}"


def test_a_server_not_serving_the_checkpoint_is_refused(tmp_path, monkeypatch):
    ck = _checkpoint(tmp_path / "iter_2" / "model", b"w")
    old = _checkpoint(tmp_path / "iter_1" / "model", b"v")
    monkeypatch.setattr(served, "served_models", lambda spec: [{"id": "policy", "root": str(old)}])
    with pytest.raises(EngineError, match=r"serves 'policy' from .*iter_1/model, not from"):
        make_engine(_spec(checkpoint=str(ck)), "policy")
    monkeypatch.setattr(served, "served_models", lambda spec: [{"id": "other", "root": str(ck)}])
    with pytest.raises(EngineError, match=r"does not serve 'policy' \(it serves other\)"):
        make_engine(_spec(checkpoint=str(ck)), "policy")


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    ck = _checkpoint(tmp_path / "m", b"w")
    with pytest.raises(EngineError, match=r"cannot list models at http://127.0.0.1:9/v1/models"):
        make_engine(_spec(checkpoint=str(ck), timeout_s=2), "policy")
