"""hf backend on the tiny model: batching must not change results."""

from __future__ import annotations

import math
import socket

import pytest

from looptool.engines import make_engine
from looptool.engines.backends.hf import HFEngine
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    SamplingParams,
    Score,
    ScoreRequest,
)
from looptool.params.engines import EngineSpec

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


def _messages(i: int) -> list[dict]:
    msgs = [{"role": "user", "content": "weather in Paris please " * (1 + i % 4) + str(i)}]
    if i % 3 == 2:
        msgs += [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                    }
                ],
            },
            {"role": "tool", "name": "get_weather", "content": '{"temp": 21}'},
        ]
    return msgs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is fastest single-threaded, and the shared test box is busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> HFEngine:
    spec = EngineSpec(backend="hf", model=str(tiny_model_dir), batch_size=4, device="cpu")
    return HFEngine(tiny_model_dir, spec, progress=False)


def test_greedy_batch_equals_one_by_one(engine):
    reqs = [
        ChatRequest(
            messages=_messages(i),
            tools=TOOLS if i % 2 else None,
            params=SamplingParams(max_tokens=24, logprobs=True),
            chat_template_kwargs={"enable_thinking": False} if i % 4 == 3 else None,
        )
        for i in range(9)
    ]
    batched = engine.generate(reqs)
    for req, gens in zip(reqs, batched, strict=True):
        alone = engine.generate([req])[0][0]
        assert gens[0].token_ids == alone.token_ids
        assert gens[0].text == alone.text
        assert gens[0].logprobs == pytest.approx(alone.logprobs, abs=1e-5)
        assert len(gens[0].token_ids) <= 24


def test_generated_logprobs_equal_teacher_forced_scores(engine):
    req = ChatRequest(
        messages=_messages(1), tools=TOOLS, params=SamplingParams(max_tokens=16, logprobs=True)
    )
    gen = engine.generate([req])[0][0]
    from looptool.engines.chat_template import encode_chat

    prompt = encode_chat(engine.tokenizer, req.messages, req.tools)
    forced = engine.score_ids([(prompt, gen.token_ids)])[0]
    assert forced == pytest.approx(gen.logprobs, abs=1e-4)


def test_batched_ppl_equals_unbatched(engine):
    comps = [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "Sure, it is sunny.",
        "x",
        "<think>\nhm\n</think>\n\nok " * 5,
    ]
    reqs = [
        ScoreRequest(messages=_messages(i), completion=comps[i % 4], tools=TOOLS if i % 2 else None)
        for i in range(10)
    ]
    batched = engine.score(reqs)
    for req, sc in zip(reqs, batched, strict=True):
        alone = engine.score([req])[0]
        assert sc.n_tokens == alone.n_tokens > 0
        assert sc.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)
        assert sc.ppl == pytest.approx(alone.ppl, rel=1e-5)
        assert math.isfinite(sc.ppl) and sc.ppl > 1


def test_empty_completion_scores_zero_tokens(engine):
    sc = engine.score([ScoreRequest(messages=_messages(0), completion="")])[0]
    assert sc.n_tokens == 0 and math.isnan(sc.ppl)


def test_choice_is_always_an_option_and_the_most_likely(engine):
    option_sets = [
        VERDICTS,
        ("yes", "no"),
        ("A", "AB", "ABC"),
        ("only",),
        ("<tool_call>", "plain text"),
    ]
    reqs = [
        ChoiceRequest(
            messages=_messages(i),
            options=option_sets[i % len(option_sets)],
            tools=TOOLS if i % 2 else None,
        )
        for i in range(12)
    ]
    picks = engine.choose(reqs)
    from looptool.engines.chat_template import encode_chat, encode_text

    for req, pick in zip(reqs, picks, strict=True):
        assert pick in req.options
        prompt = encode_chat(engine.tokenizer, req.messages, req.tools)
        sums = [
            sum(
                engine.score_ids(
                    [(prompt, encode_text(engine.tokenizer, o) + [engine.end_of_turn])]
                )[0]
            )
            for o in req.options
        ]
        assert pick == req.options[sums.index(max(sums))]


def test_sampling_is_seeded_and_independent_of_batch(engine):
    def req(seed: int, text: str = "hi") -> ChatRequest:
        return ChatRequest(
            messages=[{"role": "user", "content": text}],
            params=SamplingParams(max_tokens=12, temperature=1.0, n=3, seed=seed),
        )

    a = engine.generate([req(1), req(2, "other")])
    b = engine.generate([req(1)])
    assert [g.token_ids for g in a[0]] == [g.token_ids for g in b[0]]
    assert len({tuple(g.token_ids) for g in a[0]}) > 1  # n samples differ
    assert [g.token_ids for g in engine.generate([req(3)])[0]] != [g.token_ids for g in a[0]]


def test_stop_strings_and_length(engine):
    base = ChatRequest(messages=_messages(0), params=SamplingParams(max_tokens=20))
    free = engine.generate([base])[0][0]
    assert free.finish_reason in ("length", "stop")
    if free.finish_reason == "length":
        assert len(free.token_ids) == 20
    stop = free.text[len(free.text) // 2 :][:2]
    assert stop
    stopped = engine.generate(
        [ChatRequest(messages=base.messages, params=SamplingParams(max_tokens=20, stop=(stop,)))]
    )[0][0]
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text and free.text.startswith(stopped.text)


def test_greedy_n_returns_n_copies(engine):
    gens = engine.generate(
        [ChatRequest(messages=_messages(0), params=SamplingParams(max_tokens=5, n=3))]
    )[0]
    assert len(gens) == 3 and len({g.text for g in gens}) == 1


def test_request_over_model_length_fails_alone(tiny_model_dir):
    spec = EngineSpec(backend="hf", model=str(tiny_model_dir), max_model_len=48, device="cpu")
    eng = HFEngine(tiny_model_dir, spec, progress=False)
    short = [{"role": "user", "content": "hi"}]
    long = [{"role": "user", "content": " ".join(["word"] * 200)}]
    gens = eng.generate(
        [ChatRequest(messages=m, params=SamplingParams(max_tokens=2)) for m in (long, short)]
    )
    assert isinstance(gens[0], Failed) and "exceed the model length 48" in gens[0].reason
    assert isinstance(gens[1], list) and gens[1][0].token_ids
    scores = eng.score([ScoreRequest(short, "ok"), ScoreRequest(long, "ok")])
    assert isinstance(scores[0], Score) and scores[0].n_tokens > 0
    assert isinstance(scores[1], Failed)
    picks = eng.choose([ChoiceRequest(long, ("A", "B")), ChoiceRequest(short, ("A", "B"))])
    assert isinstance(picks[0], Failed) and picks[1] in ("A", "B")


def test_loading_never_touches_the_network(tiny_model_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    eng = make_engine(EngineSpec(backend="hf", model=str(tiny_model_dir), device="cpu"), "policy")
    assert eng.generate([ChatRequest(messages=_messages(0), params=SamplingParams(max_tokens=3))])[
        0
    ][0].token_ids
    with pytest.raises(
        EngineError, match=r"engines.judge.model: path does not exist: Qwen/Qwen3-8B .*hub id"
    ):
        make_engine(EngineSpec(backend="hf", model="Qwen/Qwen3-8B"), "judge")
