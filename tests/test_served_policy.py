"""An openai-backend policy is tied to its checkpoint: the cache identity carries the
checkpoint's content hash, and a server not serving iteration j's checkpoint is refused."""

from __future__ import annotations

import pytest

import looptool.engines.backends.openai.served as served
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


def _serving(path) -> list[dict]:
    """What vLLM's /models says when started as `vllm serve PATH --served-model-name policy`."""
    return [{"id": "policy", "root": str(path)}]


def test_cache_identity_changes_with_the_checkpoint_content(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    ck = _checkpoint(tmp_path / "iter_1" / "model", b"weights one")
    monkeypatch.setattr(served, "served_models", lambda spec: _serving(served.served_path(spec)))
    first = make_engine(_spec(checkpoint=str(ck)), "policy").model_id
    assert first.startswith(f"policy@{URL}+ckpt@")
    assert make_engine(_spec(checkpoint=str(ck)), "policy").model_id == first
    (ck / "model.safetensors").write_bytes(b"weights two")  # iteration 2 retrained it
    second = make_engine(_spec(checkpoint=str(ck)), "policy").model_id
    assert second != first and make_engine(_spec(), "policy").model_id == f"policy@{URL}"


def test_a_server_not_serving_the_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    ck = _checkpoint(tmp_path / "iter_2" / "model", b"w")
    old = _checkpoint(tmp_path / "iter_1" / "model", b"v")
    old_link = served.served_path(_spec(checkpoint=str(old)))
    monkeypatch.setattr(served, "served_models", lambda spec: _serving(old_link))
    with pytest.raises(EngineError, match=r"serves 'policy' from .*iter_1-model-\w+, not from"):
        make_engine(_spec(checkpoint=str(ck)), "policy")
    monkeypatch.setattr(served, "served_models", lambda spec: [{"id": "other", "root": str(ck)}])
    with pytest.raises(EngineError, match=r"does not serve 'policy' \(it serves other\)"):
        make_engine(_spec(checkpoint=str(ck)), "policy")


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    ck = _checkpoint(tmp_path / "m", b"w")
    with pytest.raises(EngineError, match=r"cannot list models at http://127.0.0.1:9/v1/models"):
        make_engine(_spec(checkpoint=str(ck), timeout_s=2), "policy")


def test_a_server_still_holding_the_old_weights_of_a_retrained_checkpoint_is_refused(
    tmp_path, monkeypatch
):
    """data/iter_1/model retrained in place: the path is the same, the weights are not. The
    server is told to load the checkpoint under a name carrying its content fingerprint,
    so what /models reports shows which weights it holds."""
    monkeypatch.setenv("LOOPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    ck = _checkpoint(tmp_path / "iter_1" / "model", b"weights one")
    spec = _spec(checkpoint=str(ck))
    link = served.served_path(spec)
    assert link.resolve() == ck.resolve() and served.model_fingerprint(ck) in link.name
    # the server loaded the directory by its plain path: which weights is unknowable
    monkeypatch.setattr(served, "served_models", lambda spec: _serving(ck))
    with pytest.raises(EngineError, match=rf"vllm serve {link} --served-model-name policy"):
        make_engine(spec, "policy")
    monkeypatch.setattr(served, "served_models", lambda spec: _serving(link))
    make_engine(spec, "policy")  # the current content, by name: accepted
    (ck / "model.safetensors").write_bytes(b"weights two")  # retrained, server not restarted
    with pytest.raises(EngineError, match=r"not from this iteration's checkpoint"):
        make_engine(spec, "policy")
    new_link = served.served_path(spec)
    assert new_link != link and new_link.resolve() == ck.resolve()


def test_models_is_listed_with_the_endpoints_api_key(monkeypatch):
    """`vllm serve --api-key K` answers 401 to /models without the key."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Keyed(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            ok = self.headers.get("Authorization") == "Bearer sesame"
            raw = json.dumps({"data": [{"id": "policy", "root": "/x"}]} if ok else {}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    httpd = HTTPServer(("127.0.0.1", 0), Keyed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        monkeypatch.setenv("POLICY_KEY", "sesame")
        spec = EngineSpec(backend="openai", model="policy", base_url=url, api_key_env="POLICY_KEY")
        assert served.served_models(spec) == [{"id": "policy", "root": "/x"}]
        monkeypatch.setenv("POLICY_KEY", "wrong")
        with pytest.raises(EngineError, match="401"):
            served.served_models(spec)
    finally:
        httpd.shutdown()
        httpd.server_close()
