"""template backend: task routing, determinism, clear errors."""

from __future__ import annotations

import random

import pytest

from looptool.engines import make_engine
from looptool.engines.backends.template import (
    TemplateEngine,
    register_choice_task,
    register_task,
    registered_tasks,
)
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    SamplingParams,
    ScoreRequest,
)
from looptool.params.engines import EngineSpec


@register_task("test_echo_words")
def _echo_words(request: ChatRequest, rng: random.Random) -> str:
    words = request.payload["words"]
    return " ".join(rng.sample(words, len(words)))


@register_choice_task("test_pick_longest")
def _pick_longest(request: ChoiceRequest, rng: random.Random) -> str:
    return max(request.options, key=len)


@register_choice_task("test_bad_choice")
def _bad_choice(request: ChoiceRequest, rng: random.Random) -> str:
    return "not an option"


def _req(seed: int = 0, n: int = 1, words=("a", "b", "c", "d", "e", "f")) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": "x"}],
        task="test_echo_words",
        payload={"words": list(words)},
        params=SamplingParams(seed=seed, n=n),
    )


def test_dispatch_is_deterministic_per_seed_and_content():
    eng = make_engine(EngineSpec(backend="template"), "generator", cache=None)
    assert isinstance(eng, TemplateEngine)
    a = eng.generate([_req(0, n=4), _req(1)])
    b = eng.generate([_req(1), _req(0, n=4)])
    assert [g.text for g in a[0]] == [g.text for g in b[1]]
    assert a[1][0].text == b[0][0].text
    assert len({g.text for g in a[0]}) > 1  # the n samples use different RNG streams
    assert sorted(a[0][0].text.split()) == list("abcdef")
    seeds = {eng.generate([_req(s)])[0][0].text for s in range(8)}
    assert len(seeds) > 1


def test_unknown_or_missing_task_lists_registered_tasks():
    eng = TemplateEngine()
    with pytest.raises(
        EngineError, match=r"unknown task 'nope' in request 0; registered: .*test_echo_words"
    ):
        eng.generate([ChatRequest(messages=[], task="nope")])
    with pytest.raises(EngineError, match="has no `task`"):
        eng.generate([ChatRequest(messages=[{"role": "user", "content": "hi"}])])
    assert "test_echo_words" in registered_tasks()


def test_choose_routes_and_validates_and_score_refuses():
    eng = TemplateEngine()
    req = ChoiceRequest(messages=[], options=("a", "bbb", "cc"), task="test_pick_longest")
    assert eng.choose([req]) == ["bbb"]
    with pytest.raises(EngineError, match="returned 'not an option', not one of"):
        eng.choose([ChoiceRequest(messages=[], options=("a",), task="test_bad_choice")])
    with pytest.raises(EngineError, match="template backend cannot score"):
        eng.score([ScoreRequest(messages=[], completion="x")])


def test_registering_a_different_function_under_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        register_task("test_echo_words")(lambda request, rng: "")
