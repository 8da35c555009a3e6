import pytest

from looptool.core.match import kind_group, match_strict, no_call_kind, values_equal
from looptool.core.types import Label, ToolCall


def C(name, **args):
    return ToolCall(name=name, arguments=args)


def L(*calls):
    return Label(calls=list(calls))


@pytest.mark.parametrize(
    "a,b,eq",
    [
        (1, 1.0, True),
        ("1", 1, False),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        ([1, 2], [2, 1], False),
        ([1, 2], [1.0, 2], True),
        ({"a": 1, "b": [1]}, {"b": [1.0], "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        (None, None, True),
        (None, "", False),
        ([], {}, False),
    ],
)
def test_values_equal(a, b, eq):
    assert values_equal(a, b) is eq
    assert values_equal(b, a) is eq


def test_order_free_with_duplicates_counted():
    label = L(C("f", x=1), C("f", x=1), C("g", y=2))
    assert match_strict(L(C("g", y=2), C("f", x=1), C("f", x=1.0)), label).ok
    # A,B,B must not equal A,A,B (the authors' set comparison defect)
    res = match_strict(L(C("f", x=1), C("g", y=2), C("g", y=2)), label)
    assert not res.ok


def test_bipartite_not_greedy():
    # a greedy first-fit would pair wrongly only with a loose comparator; strict equality
    # must still find the one-to-one assignment regardless of order
    label = L(C("f", x=1, y=2), C("f", x=1, y=3))
    assert match_strict(L(C("f", x=1, y=3), C("f", x=1, y=2)), label).ok


def test_reasons():
    label = L(C("f", x=1, y="a"))
    assert match_strict(L(C("f", x=1)), label).reason == "missing_arg"
    assert match_strict(L(C("f", x=1, y="a", z=0)), label).reason == "extra_arg"
    res = match_strict(L(C("f", x="1", y="a")), label)
    assert res.reason == "value_mismatch" and res.detail["param"] == "x"
    assert match_strict(L(C("g", x=1, y="a")), label).reason == "name_mismatch"
    assert match_strict(L(C("f", x=1, y="a"), C("f", x=1, y="a")), label).reason == "call_count"
    assert match_strict(Label(text="hi"), label).reason == "missing_calls"


def test_no_call_labels():
    no_call = Label(text="Which city?")
    assert match_strict(Label(text="For which date?"), no_call).ok
    assert match_strict("Which city do you mean?", no_call).ok
    res = match_strict('<tool_call>{"name": "f", "arguments": {}}</tool_call>', no_call)
    assert not res.ok and res.reason == "unexpected_call"


def test_no_call_answers_match_only_their_own_kind():
    """Any text used to match any no-call label (the text-only collapse, DESIGN §9)."""
    clarify = Label(text="Could you tell me the city? I need it.")
    refuse = Label(text="Sorry, none of my tools can do that.")
    assert no_call_kind(clarify.text) == "clarify" and no_call_kind(refuse.text) == "irrelevant"
    assert match_strict("I can't help with that.", refuse).ok
    res = match_strict("I can't help with that.", clarify)
    assert not res.ok and res.reason == "answer_kind"
    assert res.detail == {"expected": "clarify", "got": "irrelevant"}
    res = match_strict("Which date?", refuse)
    assert not res.ok and res.reason == "answer_kind"
    for empty in ("", "   ", "<think>why?</think>"):
        assert match_strict(empty, refuse).reason == "empty_answer"
    assert kind_group("multi_step") == "call" and kind_group("clarify") == "clarify"


def test_text_predictions_and_parse_errors_score_zero():
    label = L(C("f", x=[1, 2]))
    assert match_strict(
        '<tool_call>{"name": "f", "arguments": {"x": [1, 2]}}</tool_call>', label
    ).ok
    assert not match_strict(
        '<tool_call>{"name": "f", "arguments": {"x": [2, 1]}}</tool_call>', label
    ).ok
    res = match_strict('<tool_call>{"name": "f"', label)
    assert not res.ok and res.reason == "parse_error"
    assert match_strict("garbage", label).reason == "missing_calls"
    thought = '<think><tool_call>{"name": "f", "arguments": {"x": [1, 2]}}</tool_call></think>'
    assert not match_strict(thought, label).ok
