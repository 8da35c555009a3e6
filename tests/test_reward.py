"""The GRPO reward: strict ToolMatch as 1.0 / 0.0, think blocks ignored, parse failures 0."""

from __future__ import annotations

import json

import pytest

from looptool.core.codec import render_calls
from looptool.core.types import Label, ToolCall, canonical_json
from looptool.loop.reward import RewardStats, ToolMatchReward, score

WEATHER = ToolCall(name="get_weather", arguments={"city": "Paris", "unit": "celsius"})
TIME = ToolCall(name="get_time", arguments={"city": "Oslo"})
NEWS = ToolCall(name="get_news", arguments={"topic": "music", "limit": 3})


def label_json(label: Label) -> str:
    return canonical_json(label.to_json())


def call_text(*calls: ToolCall) -> str:
    return render_calls(list(calls))


def reward_of(completion, label: Label) -> float:
    return ToolMatchReward()(completions=[completion], label=[label_json(label)])[0]


def test_single_call_match_and_value_mismatch():
    label = Label(calls=[WEATHER])
    assert reward_of(call_text(WEATHER), label) == 1.0
    wrong = ToolCall(name="get_weather", arguments={"city": "Rome", "unit": "celsius"})
    assert reward_of(call_text(wrong), label) == 0.0
    assert score(call_text(wrong), label).reason == "value_mismatch"


@pytest.mark.parametrize(
    "order", [(WEATHER, TIME, NEWS), (NEWS, WEATHER, TIME), (TIME, NEWS, WEATHER)]
)
def test_parallel_calls_any_order(order):
    label = Label(calls=[WEATHER, TIME, NEWS])
    assert reward_of(call_text(*order), label) == 1.0


def test_parallel_calls_count_and_duplicates():
    label = Label(calls=[WEATHER, TIME, TIME])
    assert reward_of(call_text(TIME, WEATHER, TIME), label) == 1.0
    # A,A,B is not A,B,B: one-to-one matching counts duplicates
    assert reward_of(call_text(WEATHER, WEATHER, TIME), label) == 0.0
    assert reward_of(call_text(WEATHER, TIME), label) == 0.0  # a call missing


def test_compact_json_without_newlines_matches():
    text = '<tool_call>{"name":"get_time","arguments":{"city":"Oslo"}}</tool_call>'
    assert reward_of(text, Label(calls=[TIME])) == 1.0


def test_calls_inside_think_are_ignored():
    label = Label(calls=[TIME])
    in_think = f"<think>I could do {call_text(TIME)}</think>\nLet me answer directly."
    assert reward_of(in_think, label) == 0.0
    assert score(in_think, label).reason == "missing_calls"
    # A wrong call drafted in think does not spoil a right call after it
    drafted = f"<think>{call_text(WEATHER)}</think>\n{call_text(TIME)}"
    assert reward_of(drafted, label) == 1.0
    # Template opened <think> in the prompt: the completion starts inside it
    opened = f"maybe {call_text(WEATHER)}\n</think>\n\n{call_text(TIME)}"
    assert reward_of(opened, label) == 1.0
    # A no-call label is met by an answer whose only call sits in think
    assert reward_of(in_think, Label(text="I cannot do that with these tools.")) == 1.0


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "asdf qwerty }{ ][",
        '<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}\n',  # not closed
        '<tool_call>{"name": "get_time", "arguments": {city: Oslo}}</tool_call>',  # bad JSON
        "<tool_call>[1, 2]</tool_call>",  # not an object
        "</tool_call>",
    ],
)
def test_garbage_scores_zero(garbage):
    assert reward_of(garbage, Label(calls=[TIME])) == 0.0


def test_parse_failure_scores_zero_even_with_a_right_call():
    text = call_text(TIME) + "\n<tool_call>{broken</tool_call>"
    assert score(text, Label(calls=[TIME])).reason == "parse_error"
    assert reward_of(text, Label(calls=[TIME])) == 0.0


def test_no_call_label():
    label = Label(text="Could you tell me the city?")
    assert reward_of("Which city do you mean?", label) == 1.0
    # the words are not compared, the kind of answer is: it must ask for something
    assert reward_of("", label) == 0.0
    assert reward_of("Sorry, I cannot help with that.", label) == 0.0
    assert reward_of(call_text(TIME), label) == 0.0
    assert score(call_text(TIME), label).reason == "unexpected_call"
    assert reward_of("<tool_call>{oops", label) == 0.0  # unparsable is never a match


def test_a_stored_no_call_label_is_rewarded_by_its_kind_not_its_wording():
    """The reward reads the kind the stored label carries; the prediction by what it does."""
    ask = json.dumps(
        {"calls": [], "text": "Please tell me which city you mean.", "kind": "clarify"}
    )
    decline = json.dumps(
        {
            "calls": [],
            "text": "Sorry, I cannot book flights. Is there anything else I can help with?",
            "kind": "irrelevant",
        }
    )
    logged: dict[str, float] = {}
    rewards = ToolMatchReward()(
        completions=[
            "Which city do you mean？",  # full-width question mark
            "I can only look up the weather.",
            "I can't book flights, sorry. Anything else?",
            "Could you tell me the city?",
        ],
        label=[ask, ask, decline, decline],
        log_metric=logged.__setitem__,
    )
    assert rewards == [1.0, 0.0, 1.0, 0.0]
    assert logged["toolmatch/reward_clarify"] == logged["toolmatch/reward_irrelevant"] == 0.5


def test_json_types_are_strict():
    label = Label(calls=[ToolCall(name="f", arguments={"n": 1, "flag": True})])
    assert (
        reward_of('<tool_call>{"name":"f","arguments":{"n":1.0,"flag":true}}</tool_call>', label)
        == 1.0
    )
    assert (
        reward_of('<tool_call>{"name":"f","arguments":{"n":"1","flag":true}}</tool_call>', label)
        == 0.0
    )
    assert (
        reward_of('<tool_call>{"name":"f","arguments":{"n":1,"flag":1}}</tool_call>', label) == 0.0
    )


def test_conversational_completion_form():
    completion = [{"role": "assistant", "content": call_text(TIME)}]
    assert reward_of(completion, Label(calls=[TIME])) == 1.0


def test_batch_rewards_and_logged_rates():
    logged: dict[str, list[float]] = {}
    reward = ToolMatchReward()
    labels = [label_json(Label(calls=[TIME]))] * 4
    completions = [call_text(TIME), call_text(WEATHER), "<tool_call>{", call_text(TIME)]
    out = reward(
        completions=completions,
        label=labels,
        log_metric=lambda k, v: logged.setdefault(k, []).append(v),
        prompts=["p"] * 4,  # TRL passes more keyword arguments; they are ignored
        trainer_state=None,
    )
    assert out == [1.0, 0.0, 0.0, 1.0]
    assert logged == {
        "toolmatch/match_rate": [0.5],
        "toolmatch/parse_failure_rate": [0.25],
        "toolmatch/tool_call_rate": [0.75],  # the unparseable one holds no call
        "toolmatch/reward_call": [0.5],  # every label is a call label
    }
    stats = reward.stats.to_json()
    assert stats["completions_scored"] == 4
    assert stats["reasons"] == {"match": 2, "name_mismatch": 1, "parse_error": 1}
    assert reward.__name__ == "toolmatch"  # TRL names the reward's log keys after it


def test_label_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 completions but 1 labels"):
        ToolMatchReward()(completions=["a", "b"], label=[label_json(Label(calls=[TIME]))])


def test_stats_empty_rates():
    assert RewardStats().to_json()["match_rate"] == 0.0
    assert json.loads(json.dumps(RewardStats().to_json()))["reasons"] == {}
