"""VLLMEngine against a fake vllm (tests/fake_vllm.py): per-request length failures,
errors naming the request, streaming in completion order through the request cache, the
choice fallback, one engine per process. No GPU; the real classes' signatures are checked
in test_vllm_api_drift.py."""

from __future__ import annotations

import sqlite3

import fake_vllm
import pytest
import test_probe as probe_t

from looptool.core.types import Message
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    SamplingParams,
    Score,
    ScoreRequest,
)
from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import RequestCache
from looptool.engines.failures import ENGINE_FAILED
from looptool.loop.probe import probe_metrics, run_probe
from looptool.params.engines import EngineSpec
from looptool.params.loop import ProbeParams

LONG = " ".join(["word"] * 400)


@pytest.fixture
def vllm(monkeypatch):
    return fake_vllm.install(monkeypatch)


def make(tiny_model_dir, **spec):
    from looptool.engines.backends.vllm import VLLMEngine

    spec = {"backend": "vllm", "model": str(tiny_model_dir), "max_model_len": 256, **spec}
    return VLLMEngine(tiny_model_dir, EngineSpec(**spec))


def chat(text: str, **params) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": text}], params=SamplingParams(**params)
    )


def test_over_long_requests_fail_alone_and_never_reach_vllm(vllm, tiny_model_dir):
    eng = make(tiny_model_dir)
    llm = fake_vllm.FakeLLM.instances[0]
    gens = eng.generate([chat("hi", max_tokens=4, logprobs=True), chat(LONG), chat("yo")])
    assert isinstance(gens[1], Failed) and "exceed the model length 256" in gens[1].reason
    assert gens[0][0].logprobs == [-0.25, -0.75] and gens[0][0].finish_reason == "length"
    assert gens[2][0].text.startswith("answer")
    assert len(llm.enqueued) == 2 and all(len(p) <= 256 for p in llm.enqueued)
    msgs = [{"role": "user", "content": "hi"}]
    scores = eng.score(
        [ScoreRequest(msgs, "fine"), ScoreRequest([{"role": "user", "content": LONG}], "x")]
    )
    assert isinstance(scores[0], Score) and scores[0].n_tokens > 0
    assert set(scores[0].token_logprobs) <= {-0.5, -1.5} and isinstance(scores[1], Failed)
    picks = eng.choose(
        [
            ChoiceRequest([{"role": "user", "content": LONG}], ("A", "B")),
            ChoiceRequest(msgs, ("A", "B")),
        ]
    )
    assert isinstance(picks[0], Failed) and picks[1] == "A"


def test_over_long_prompt_is_a_probe_reject_row_not_a_crash(vllm, tiny_model_dir):
    long = probe_t.sample(1).model_copy(update={"context": [Message(role="user", content=LONG)]})
    samples = [probe_t.sample(0), long]
    eng = make(tiny_model_dir, max_model_len=512)  # the policy prompt alone is ~390 tokens
    table = run_probe(
        eng, probe_t.dataset(samples), iteration=1, date=probe_t.DATE, params=ProbeParams()
    )
    rows = {r["sample_id"]: r for r in table.to_pylist()}
    bad = rows[samples[1].sample_id]
    assert bad["match_reason"] == ENGINE_FAILED and "exceed the model length" in bad["engine_error"]
    assert rows[samples[0].sample_id]["engine_error"] is None
    assert probe_metrics(table)["engine_failed"] == 1


def test_vllm_errors_become_engine_errors_naming_the_request(vllm, tiny_model_dir):
    eng = make(tiny_model_dir)
    llm = fake_vllm.FakeLLM.instances[0]
    llm.reject = lambda ids: len(ids) > 12 and llm.counter == 1  # the second request
    with pytest.raises(
        EngineError, match=r"vllm generate: request #1 \('second one here'\) rejected: ValueError"
    ):
        eng.generate([chat("a"), chat("second one here"), chat("c")])
    assert llm.llm_engine.aborted == ["0-abcdef12"]  # the engine is left empty
    llm.reject = lambda ids: False
    llm.fail_step = True
    with pytest.raises(
        EngineError,
        match=r"engine failed with 2 requests in flight \(first #0 \('a'\)\): RuntimeError: CUDA error",
    ):
        eng.generate([chat("a"), chat("b")])


def test_stream_yields_in_completion_order_and_the_choice_fallback_scores(vllm, tiny_model_dir):
    eng = make(tiny_model_dir)
    llm = fake_vllm.FakeLLM.instances[0]
    llm.per_step = 1
    order = [i for i, _ in eng.stream("generate", [chat(f"q{i}") for i in range(4)])]
    assert order == [3, 2, 1, 0]  # last submitted finishes first in the fake
    llm.choice_reply = lambda ids: "not an option"
    msgs = [{"role": "user", "content": "which?"}]
    assert eng.choose([ChoiceRequest(msgs, ("BOTH_CORRECT", "PRED_WRONG"))]) in (
        ["BOTH_CORRECT"],
        ["PRED_WRONG"],
    )
    assert llm.counter == 4 + 1 + 2  # the constrained request, then one score per option
    with pytest.raises(EngineError, match="unknown request kind"):
        eng.stream("embed", [])


def test_a_kill_loses_at_most_one_flush_window(vllm, tiny_model_dir, tmp_path):
    """Streaming through CachedEngine: at every engine step, count results the stream has
    finished but the cache has not committed (what a SIGKILL then would lose)."""
    eng = make(tiny_model_dir)
    llm = fake_vllm.FakeLLM.instances[0]
    llm.per_step = 3
    cache = RequestCache(tmp_path / "r.sqlite")
    cached = CachedEngine(eng, cache, progress=False, flush_every=8, flush_seconds=3600)
    finished, lost = [0], []
    probe_db = sqlite3.connect(tmp_path / "r.sqlite")

    def on_step(done):
        committed = probe_db.execute("SELECT count(*) FROM requests").fetchone()[0]
        lost.append(finished[0] - committed)
        finished[0] += len(done)

    llm.on_step = on_step
    n = 100
    outs = cached.generate([chat(f"question {i}") for i in range(n)])
    assert all(not isinstance(o, Failed) for o in outs) and cached.streaming
    assert cached.stats()["backend_requests"] == n
    assert max(lost) <= 8 - 1 + 3  # one flush window, plus the step being handed out
    assert probe_db.execute("SELECT count(*) FROM requests").fetchone()[0] == n
    print(f"max finished-but-uncommitted results at a step: {max(lost)} of {n}")


def test_one_vllm_engine_per_process(vllm, tiny_model_dir):
    first = make(tiny_model_dir)
    with pytest.raises(EngineError, match="still open in this process"):
        make(tiny_model_dir)
    first.close()
    assert fake_vllm.FakeLLM.instances[0].llm_engine.engine_core.shut
    second = make(tiny_model_dir)
    with pytest.raises(EngineError, match="is closed"):
        first.generate([chat("a")])
    assert second.generate([chat("a")])[0][0].text
    second.close()
