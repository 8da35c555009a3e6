import json

from hypothesis import given, settings
from hypothesis import strategies as st

from looptool.core.codec import parse_completion, render_calls, render_label
from looptool.core.types import Label, ToolCall

json_scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=12)
json_scalars |= st.floats(allow_nan=False, allow_infinity=False, width=64)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,20}", fullmatch=True)
calls = st.builds(
    ToolCall, name=names, arguments=st.dictionaries(st.text(max_size=8), json_values, max_size=5)
)


@given(st.lists(calls, min_size=1, max_size=4))
@settings(max_examples=300, deadline=None)
def test_parse_render_roundtrip(cs):
    parsed = parse_completion(render_calls(cs))
    assert parsed.error is None
    assert parsed.calls == cs
    assert parsed.text == ""


@given(st.lists(calls, min_size=1, max_size=3), st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_roundtrip_after_think(cs, thought):
    thought = thought.replace("<think>", "").replace("</think>", "")
    parsed = parse_completion(f"<think>{thought}</think>\n" + render_calls(cs))
    assert parsed.calls == cs
    assert parsed.error is None


tag_soup = st.lists(
    st.sampled_from(
        [
            "<tool_call>",
            "</tool_call>",
            "<think>",
            "</think>",
            "{",
            "}",
            '"name"',
            ":",
            '"f"',
            '"arguments"',
            "[",
            "]",
            ",",
            "\n",
            " ",
            "x",
            '"',
            "\\",
            "1.5e3",
        ]
    ),
    max_size=40,
).map("".join)


@given(st.one_of(st.text(max_size=200), tag_soup))
@settings(max_examples=1500, deadline=None)
def test_parse_never_raises(text):
    parsed = parse_completion(text)
    assert isinstance(parsed.calls, list)
    if parsed.error is not None:
        assert parsed.error.kind in {
            "unterminated_block",
            "unmatched_close",
            "invalid_json",
            "bad_call_shape",
        }


def test_blocks_with_and_without_newlines_and_string_arguments():
    text = (
        '<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>'
        '<tool_call>\n{"name": "b", "arguments": "{\\"y\\": [1, 2]}"}\n</tool_call> done'
    )
    parsed = parse_completion(text)
    assert parsed.error is None
    assert parsed.calls == [
        ToolCall(name="a", arguments={"x": 1}),
        ToolCall(name="b", arguments={"y": [1, 2]}),
    ]
    assert parsed.text == "done"


def test_calls_inside_think_are_ignored():
    text = '<think>maybe <tool_call>{"name": "bad", "arguments": {}}</tool_call></think>'
    text += '<tool_call>{"name": "good", "arguments": {}}</tool_call>'
    parsed = parse_completion(text)
    assert [c.name for c in parsed.calls] == ["good"]
    assert "bad" in parsed.think


def test_think_opened_by_template_and_unclosed_think():
    parsed = parse_completion(
        'reasoning</think><tool_call>{"name": "f", "arguments": {}}</tool_call>'
    )
    assert parsed.think == "reasoning" and [c.name for c in parsed.calls] == ["f"]
    parsed = parse_completion('<think>still thinking <tool_call>{"name": "f"}</tool_call>')
    assert parsed.calls == [] and parsed.error is None


def test_structured_errors():
    assert parse_completion('<tool_call>{"name": "f"').error.kind == "unterminated_block"
    assert parse_completion("<tool_call>{nope}</tool_call>").error.kind == "invalid_json"
    assert parse_completion("<tool_call>[1]</tool_call>").error.kind == "bad_call_shape"
    assert (
        parse_completion('<tool_call>{"arguments": {}}</tool_call>').error.kind == "bad_call_shape"
    )
    err = parse_completion('<tool_call>{"name": "f", "arguments": "{oops"}</tool_call>').error
    assert err.kind == "invalid_json" and err.block == 0
    assert parse_completion("text </tool_call>").error.kind == "unmatched_close"
    # the second of two blocks is unterminated: the first call still parses
    parsed = parse_completion('<tool_call>{"name": "f"}</tool_call><tool_call>{"name": "g"}')
    assert [c.name for c in parsed.calls] == ["f"] and parsed.error.block == 1


def test_to_label_and_render_label():
    label = parse_completion("No function fits; what city?").to_label()
    assert label.is_no_call and label.text == "No function fits; what city?"
    assert render_label(label) == label.text
    calls = [ToolCall(name="f", arguments={"b": 1, "a": "x"})]
    rendered = render_label(Label(calls=calls))
    body = rendered.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")
    assert json.loads(body) == {"name": "f", "arguments": {"a": "x", "b": 1}}
    assert parse_completion("<tool_call>{bad}</tool_call>").to_label() is None
