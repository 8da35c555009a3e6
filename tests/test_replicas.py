"""One-node data parallelism: one process per replica, requests split evenly, results
merged in request order; the same answers and cache identity as a single engine."""

from __future__ import annotations

import pytest

from looptool.engines import make_engine
from looptool.engines.base import ChatRequest, SamplingParams, ScoreRequest
from looptool.engines.cache_store import RequestCache
from looptool.engines.executors.replicas import split_even
from looptool.engines.placement import stage_gpus
from looptool.params.engines import EngineSpec


def test_split_even_covers_every_request_once():
    for n in (0, 1, 5, 8, 11):
        blocks = split_even(n, 3)
        assert [i for b in blocks for i in b] == list(range(n))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    spec = EngineSpec(backend="vllm", model="m", replicas=["0,1", "2,3"])
    assert stage_gpus([spec]) == "0,1,2,3"
    with pytest.raises(ValueError, match="replicas"):
        EngineSpec(backend="hf", model="m", replicas=["0;1"])


@pytest.mark.slow
def test_two_replicas_answer_like_one_engine(tiny_model_dir, tmp_path):
    base = {"backend": "hf", "model": str(tiny_model_dir), "device": "cpu", "cpu_threads": 1}
    single = make_engine(EngineSpec(**base), "policy")
    cache = RequestCache(tmp_path / "r.sqlite")
    pool = make_engine(EngineSpec(**base, replicas=["0", "1"]), "policy", cache)
    try:
        assert pool.streaming and pool.model_id == single.model_id
        reqs = [
            ChatRequest(
                messages=[{"role": "user", "content": f"weather in city {i}?"}],
                params=SamplingParams(max_tokens=6),
            )
            for i in range(5)
        ]
        # the cache stores no token ids (no stage reads them back): compare the replies
        want = [(g[0].text, g[0].finish_reason) for g in single.generate(reqs)]
        assert [(g[0].text, g[0].finish_reason) for g in pool.generate(reqs)] == want
        assert pool.stats()["backend_requests"] == 5
        again = pool.generate(reqs)  # from the cache
        assert [(g[0].text, g[0].finish_reason) for g in again] == want
        assert pool.stats()["cache_hits"] == 5
        scores = pool.score([ScoreRequest(r.messages, "sunny") for r in reqs])
        assert all(s.n_tokens > 0 for s in scores)
    finally:
        pool.inner.close()
        cache.close()
