"""Request cache: keys, hit/miss accounting, per-batch commits, SIGKILL resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    Generation,
    SamplingParams,
    Score,
    ScoreRequest,
)
from looptool.engines.cache import CachedEngine, cache_stats
from looptool.engines.cache_store import RequestCache, default_cache_dir
from looptool.engines.cli import cache_group


class Counting:
    """A fake backend recording every request it is sent."""

    backend, model_id = "fake", "fake@0"

    def __init__(self, batch_size: int = 3):
        self.batch_size = batch_size
        self.sent: list[object] = []
        self.batches: list[int] = []

    def _log(self, reqs):
        self.sent.extend(reqs)
        self.batches.append(len(reqs))

    def generate(self, reqs):
        self._log(reqs)
        return [
            [
                Generation(
                    text=r.messages[-1]["content"][::-1], token_ids=[1, 2], logprobs=[-0.5, -1.0]
                )
                for _ in range(r.params.n)
            ]
            for r in reqs
        ]

    def score(self, reqs):
        self._log(reqs)
        return [Score(token_logprobs=[-float(len(r.completion))], token_ids=[7]) for r in reqs]

    def choose(self, reqs):
        self._log(reqs)
        return [r.options[-1] for r in reqs]


def _req(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def _counts(eng) -> dict:
    """The request counters of eng.stats() (without the byte sizes)."""
    return {k: v for k, v in eng.stats().items() if not k.startswith("cache_bytes")}


@pytest.fixture
def cache(tmp_path):
    with RequestCache(tmp_path / "requests.sqlite") as c:
        yield c


def test_key_covers_every_request_field():
    k = RequestCache.make_key
    from looptool.engines.base import request_to_json as j

    base = _req("hi")
    keys = {
        k("hf", "m", "generate", j(base)),
        k("vllm", "m", "generate", j(base)),
        k("hf", "m2", "generate", j(base)),
        k("hf", "m", "generate", j(replace(base, params=SamplingParams(max_tokens=9)))),
        k("hf", "m", "generate", j(replace(base, params=SamplingParams(stop=("x",))))),
        k(
            "hf",
            "m",
            "generate",
            j(replace(base, tools=[{"type": "function", "function": {"name": "f"}}])),
        ),
        k("hf", "m", "generate", j(replace(base, chat_template_kwargs={"enable_thinking": False}))),
        k("hf", "m", "generate", j(replace(base, task="t"))),
        k("hf", "m", "generate", j(replace(base, payload={"a": 1}))),
        k("hf", "m", "score", j(ScoreRequest(messages=base.messages, completion="c"))),
    }
    assert len(keys) == 10
    # key order inside dicts does not matter (canonical JSON)
    a = _req("hi", payload={"a": 1, "b": 2})
    b = _req("hi", payload={"b": 2, "a": 1})
    assert k("hf", "m", "generate", j(a)) == k("hf", "m", "generate", j(b))


def test_hits_misses_dedup_and_batches(cache):
    fake = Counting(batch_size=3)
    eng = CachedEngine(fake, cache, progress=False)
    reqs = [_req(f"q{i % 5}") for i in range(7)]  # 5 distinct
    first = eng.generate(reqs)
    assert [g[0].text for g in first] == [f"{i % 5}q" for i in range(7)]
    assert len(fake.sent) == 5 and fake.batches == [3, 2]
    assert _counts(eng) == {
        "cache_hits": 0,
        "cache_misses": 7,
        "backend_requests": 5,
        "backend_batches": 2,
        "failed": 0,
    }
    second = eng.generate(reqs + [_req("new")])
    assert second[:7] == first and second[7][0].text == "wen"
    assert len(fake.sent) == 6
    assert eng.stats()["cache_hits"] == 7
    # each kind is cached separately and round-trips its type
    s1 = eng.score([ScoreRequest(messages=[], completion="abc")])
    s2 = eng.score([ScoreRequest(messages=[], completion="abc")])
    assert s1 == s2 and isinstance(s2[0], Score) and s2[0].token_logprobs == [-3.0]
    c = [ChoiceRequest(messages=[], options=("a", "b"))]
    assert eng.choose(c) == eng.choose(c) == ["b"]
    assert len(fake.sent) == 8
    assert eng.backend == "fake" and eng.batch_size == 3


def test_template_engines_are_never_cached_and_report_zero_stats(cache):
    from looptool.engines import make_engine
    from looptool.engines.backends.template import TemplateEngine
    from looptool.params.engines import EngineSpec

    eng = make_engine(EngineSpec(backend="template"), "generator", cache)
    assert isinstance(eng, TemplateEngine)
    assert cache_stats(eng) == {
        "cache_hits": 0,
        "cache_misses": 0,
        "backend_requests": 0,
        "backend_batches": 0,
        "failed": 0,
        "cache_bytes_written": 0,
        "cache_bytes": 0,
    }
    cached = CachedEngine(Counting(), cache, progress=False)
    cached.generate([_req("a"), _req("a")])
    assert cache_stats(cached)["backend_requests"] == 1


def test_results_are_copies(cache):
    eng = CachedEngine(Counting(), cache, progress=False)
    lp = SamplingParams(logprobs=True)
    a = eng.generate([_req("x", params=lp), _req("x", params=lp)])
    a[0][0].logprobs.append(99)
    assert a[1][0].logprobs == [-0.5, -1.0]
    assert eng.generate([_req("x", params=lp)])[0][0].logprobs == [-0.5, -1.0]


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOPTOOL_CACHE_DIR", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    assert default_cache_dir(None, root=str(tmp_path / "sub")) == tmp_path / ".cache/looptool"
    assert default_cache_dir("elsewhere", root=str(tmp_path)) == tmp_path / "elsewhere"
    monkeypatch.setenv("LOOPTOOL_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir("elsewhere", root=str(tmp_path)) == tmp_path / "env"


def test_cli_info_and_clear(tmp_path, cache):
    eng = CachedEngine(Counting(), cache, progress=False)
    eng.generate([_req("a"), _req("b")])
    eng.choose([ChoiceRequest(messages=[], options=("x", "y"))])
    runner = CliRunner()
    res = runner.invoke(cache_group, ["info", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "entries: 3" in res.output and "generate" in res.output and "fake@0" in res.output
    res = runner.invoke(
        cache_group, ["clear", "--cache-dir", str(tmp_path), "--backend", "other", "--yes"]
    )
    assert "deleted 0 entries" in res.output
    res = runner.invoke(cache_group, ["clear", "--cache-dir", str(tmp_path), "--yes"])
    assert "deleted 3 entries" in res.output
    assert cache.info()["entries"] == 0


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from looptool.engines import CachedEngine, ChatRequest, RequestCache, SamplingParams
    from looptool.engines.backends.hf import HFEngine
    from looptool.params.engines import EngineSpec

    model_dir, db, marker, block_at = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])

    class Counting:
        def __init__(self, inner):
            self.inner, self.calls, self.batches = inner, 0, 0
            self.backend, self.model_id, self.batch_size = inner.backend, inner.model_id, inner.batch_size
        def generate(self, reqs):
            if self.batches == block_at:  # the stage is "killed" while this batch is in flight
                marker.write_text("in flight")
                time.sleep(600)
            self.batches += 1
            self.calls += len(reqs)
            return self.inner.generate(reqs)

    spec = EngineSpec(backend="hf", model=model_dir, batch_size=4, device="cpu", cpu_threads=1)
    backend = Counting(HFEngine(model_dir, spec, progress=False))
    engine = CachedEngine(backend, RequestCache(db), progress=False)
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"request {i} " * (1 + i % 3)}],
                        params=SamplingParams(max_tokens=6)) for i in range(N)]
    out = engine.generate(reqs)
    print("CALLS", backend.calls, "HITS", engine.stats()["cache_hits"])
    print("TEXTS", [g[0].text for g in out])
    """
)
N_REQ = 14


def _run_child(script: Path, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigkill_then_rerun_sends_only_unfinished_requests(tiny_model_dir, tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(CHILD.replace("range(N)", f"range({N_REQ})"))
    db, marker = tmp_path / "requests.sqlite", tmp_path / "marker"
    # Run 1: two batches (8 requests) finish, the third is in flight when SIGKILL lands.
    proc = _run_child(script, [str(tiny_model_dir), str(db), str(marker), "2"])
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "child never reached the third batch"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(db) as con:
        committed = con.execute("SELECT count(*) FROM requests").fetchone()[0]
    assert committed == 8
    # Run 2: only the unfinished requests reach the backend.
    proc = _run_child(script, [str(tiny_model_dir), str(db), str(marker.with_name("m2")), "-1"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    calls_line = next(line for line in out.splitlines() if line.startswith("CALLS"))
    assert calls_line == f"CALLS {N_REQ - committed} HITS {committed}"
    # In-process: everything is cached now; zero backend calls, same texts as run 2.
    from looptool.engines.backends.hf import HFEngine
    from looptool.params.engines import EngineSpec

    spec = EngineSpec(backend="hf", model=str(tiny_model_dir), batch_size=4, device="cpu")
    hf = HFEngine(tiny_model_dir, spec, progress=False)
    calls = []
    hf_generate = hf.generate
    hf.generate = lambda reqs: calls.append(len(reqs)) or hf_generate(reqs)
    with RequestCache(db) as cache:
        eng = CachedEngine(hf, cache, progress=False)
        reqs = [
            _req(f"request {i} " * (1 + i % 3), params=SamplingParams(max_tokens=6))
            for i in range(N_REQ)
        ]
        texts = [g[0].text for g in eng.generate(reqs)]
    assert calls == [] and eng.stats()["cache_hits"] == N_REQ
    assert f"TEXTS {texts}" in out.splitlines()


class Streaming(Counting):
    """A fake streaming backend: takes every miss at once and yields results in reverse
    (completion) order; optionally fails after ``fail_after`` results."""

    def __init__(self, fail_after: int | None = None):
        super().__init__(batch_size=2)
        self.fail_after = fail_after
        self.streams: list[int] = []

    def stream(self, kind, reqs):
        self.streams.append(len(reqs))
        outs = getattr(Counting, kind)(self, list(reqs))
        for n, i in enumerate(reversed(range(len(reqs)))):
            if self.fail_after is not None and n == self.fail_after:
                raise RuntimeError("replica died")
            yield i, outs[i]


def test_streaming_backend_gets_all_misses_at_once_and_results_land_in_order(cache):
    backend = Streaming()
    eng = CachedEngine(backend, cache, progress=False, flush_every=3, flush_seconds=3600)
    assert eng.streaming and not CachedEngine(Counting(), cache).streaming
    reqs = [_req(f"q{i % 7}") for i in range(9)]  # 7 distinct
    out = eng.generate(reqs)
    assert [g[0].text for g in out] == [f"{i % 7}q" for i in range(9)]
    assert backend.streams == [7]  # one call, not batch_size chunks
    # 7 results committed in windows of 3: 3 + 3 + 1
    assert _counts(eng) == {
        "cache_hits": 0,
        "cache_misses": 9,
        "backend_requests": 7,
        "backend_batches": 3,
        "failed": 0,
    }
    assert eng.generate(reqs) == out and backend.streams == [7]
    assert eng.choose([ChoiceRequest(messages=[], options=("a", "b"))]) == ["b"]


def test_streaming_failure_keeps_finished_results_and_rerun_sends_only_the_rest(cache):
    reqs = [_req(f"r{i}") for i in range(6)]
    failing = CachedEngine(Streaming(fail_after=4), cache, progress=False, flush_every=100)
    with pytest.raises(RuntimeError, match="replica died"):
        failing.generate(reqs)
    assert cache.info()["entries"] == 4  # flushed on the way out, not lost with the window
    backend = Streaming()
    out = CachedEngine(backend, cache, progress=False).generate(reqs)
    assert backend.streams == [2]  # only the two unfinished requests are sent again
    assert [g[0].text for g in out] == [f"{i}r" for i in range(6)]


def test_streaming_backend_that_skips_or_repeats_a_result_is_an_error(cache):
    from looptool.engines.base import EngineError

    class Short(Streaming):
        def stream(self, kind, reqs):
            yield from list(super().stream(kind, reqs))[:-1]

    class Twice(Streaming):
        def stream(self, kind, reqs):
            items = list(super().stream(kind, reqs))
            yield from [*items, items[0]]

    with pytest.raises(EngineError, match="returned 2 results for 3 requests"):
        CachedEngine(Short(), cache, progress=False).generate([_req(f"s{i}") for i in range(3)])
    with pytest.raises(EngineError, match="twice or out of range"):
        CachedEngine(Twice(), cache, progress=False).generate([_req(f"t{i}") for i in range(3)])


def test_a_failed_request_is_returned_in_place_and_never_cached(cache):
    from looptool.engines.base import Failed, is_failed

    class OneBad(Counting):
        def generate(self, reqs):
            outs = super().generate(reqs)
            return [
                Failed("too long") if r.messages[-1]["content"] == "bad" else o
                for r, o in zip(reqs, outs, strict=True)
            ]

    backend = OneBad(batch_size=4)
    eng = CachedEngine(backend, cache, progress=False)
    out = eng.generate([_req("ok"), _req("bad"), _req("bad")])
    assert out[0][0].text == "ko" and is_failed(out[1]) and out[2] == Failed("too long")
    assert eng.stats()["failed"] == 1 and cache.info()["entries"] == 1
    eng.generate([_req("ok"), _req("bad")])
    assert [r.messages[-1]["content"] for r in backend.sent] == ["ok", "bad", "bad"]


def test_batch_backend_commits_each_whole_batch_before_the_next_is_sent(cache):
    """A slow batch must not be split by the timed flush (meant for streaming backends):
    everything a batch returned is in the cache before the next batch starts."""

    class Checking(Counting):
        def generate(self, reqs):
            assert cache.info()["entries"] == sum(self.batches)  # earlier batches all saved
            return super().generate(reqs)

    eng = CachedEngine(Checking(batch_size=3), cache, progress=False, flush_seconds=0.0)
    eng.generate([_req(f"b{i}") for i in range(7)])
    assert eng.stats()["backend_batches"] == 3 and cache.info()["entries"] == 7


def _committed(path) -> set[str]:
    """The request texts committed to the cache file, read over a connection of its own
    (what a SIGKILL at this moment would leave on disk)."""
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT response FROM requests").fetchall()
    return {json.loads(r)[0]["text"][::-1] for (r,) in rows}


def test_batch_backend_after_a_failed_request_still_commits_each_batch_before_the_next(cache):
    """A Failed result is never cached but still ends its batch: the batch's finished
    results are on disk before the next batch is sent, for every later batch too."""
    from looptool.engines.base import Failed

    seen: list[set[str]] = []

    class FailsOne(Counting):
        def generate(self, reqs):
            seen.append(_committed(cache.path))  # what a kill now would leave
            outs = super().generate(reqs)
            return [
                Failed("too long") if r.messages[-1]["content"] == "b1" else o
                for r, o in zip(reqs, outs, strict=True)
            ]

    eng = CachedEngine(FailsOne(batch_size=3), cache, progress=False)
    eng.generate([_req(f"b{i}") for i in range(9)])
    # misses go out shortest-first; all "b<i>" are the same size, so in request order
    assert seen == [set(), {"b0", "b2"}, {"b0", "b2", "b3", "b4", "b5"}]
    assert _committed(cache.path) == {f"b{i}" for i in range(9)} - {"b1"}


def test_streaming_results_are_committed_during_a_stall_within_one_flush_window(cache):
    """A streaming backend yields a few results and a Failed, then stalls: the finished
    results reach the disk within one flush window although no new result arrives."""
    from looptool.engines.base import Failed

    window = 0.2
    during_stall: list[set[str]] = []

    class Stalls(Counting):
        def stream(self, kind, reqs):
            outs = Counting.generate(self, list(reqs))
            yield 0, outs[0]
            yield 1, Failed("HTTP 400: too long")
            yield 2, outs[2]
            deadline = time.monotonic() + 20 * window
            while time.monotonic() < deadline and len(_committed(cache.path)) < 2:
                time.sleep(window / 10)
            during_stall.append(_committed(cache.path))
            time.sleep(3 * window)  # still stalled: nothing is committed twice
            raise RuntimeError("server died")

    eng = CachedEngine(Stalls(), cache, progress=False, flush_every=100, flush_seconds=window)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="server died"):
        eng.generate([_req(f"s{i}") for i in range(4)])
    assert during_stall == [{"s0", "s2"}]
    assert time.monotonic() - start < 20 * window
    assert eng.stats()["backend_batches"] == 1 and eng.stats()["failed"] == 1
