import pytest

from looptool.core.rules import check_calls
from looptool.core.tables import SAMPLES, rows_to_table, sample_from_row, sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, ToolSpecError

BARE = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer"},
            "where": {
                "type": "object",
                "properties": {
                    "lat": {"type": "number"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "required": ["city"],
    },
}


def test_three_forms_normalize_to_one():
    openai = {"type": "function", "function": BARE}
    bfcl = {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "dict",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer"},
                "where": {
                    "type": "dict",
                    "properties": {
                        "lat": {"type": "float"},
                        "tags": {"type": "tuple", "items": {"type": "string"}},
                    },
                },
            },
            "required": ["city"],
        },
    }
    a, b, c = (ToolSpec.from_any(x) for x in (BARE, openai, bfcl))
    assert a == b == c
    assert ToolSpec.from_any(
        {"name": "f", "parameters": {"type": "dict", "properties": {"v": {"type": "any"}}}}
    ).properties == {"v": {}}


@pytest.mark.parametrize(
    "raw,msg",
    [
        ([], "expected an object"),
        ({"description": "x"}, "missing function name"),
        ({"name": "bad name!"}, "invalid function name"),
        ({"name": "f", "parameters": {"type": "string"}}, "must be an object schema"),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["x"]}},
            "required params not in properties",
        ),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": 3}}}},
            "expected a string",
        ),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {"x": {"minimum": "a"}}}},
            "invalid JSON schema",
        ),
    ],
)
def test_invalid_specs_name_the_problem(raw, msg):
    with pytest.raises(ToolSpecError, match=msg):
        ToolSpec.from_any(raw, where="tools.json[3]")


def test_sample_id_stable_and_label_independent():
    tools = [ToolSpec.from_any(BARE)]
    ctx = [Message(role="user", content="weather in Paris?")]
    s1 = Sample(
        tools=tools,
        context=ctx,
        label=Label(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})]),
    )
    s2 = Sample(tools=tools, context=ctx, label=Label(text="Which unit?"))
    assert s1.sample_id == s2.sample_id
    assert s1.label_hash != s2.label_hash
    assert len(s1.sample_id) == 16
    # a different context changes the id
    s3 = Sample(
        tools=tools, context=[Message(role="user", content="weather in Rome?")], label=s1.label
    )
    assert s3.sample_id != s1.sample_id


def test_row_roundtrip():
    tools = [ToolSpec.from_any(BARE)]
    ctx = [
        Message(role="user", content="weather in Paris?"),
        Message(
            role="assistant", tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})]
        ),
        Message(role="tool", name="get_weather", content='{"error": "timeout"}'),
    ]
    s = Sample(
        tools=tools,
        context=ctx,
        label=Label(calls=[ToolCall(name="get_weather", arguments={"city": "Paris", "days": 2})]),
    )
    row = sample_to_row(s, dialogue_id="d1", step=2)
    assert row["kind"] == "multi_step"
    table = rows_to_table([row], SAMPLES)
    back = sample_from_row(table.to_pylist()[0])
    assert back == s and back.sample_id == row["sample_id"]


def test_schema_rules():
    tools = [ToolSpec.from_any(BARE)]
    ok = [
        ToolCall(
            name="get_weather", arguments={"city": "Paris", "where": {"lat": 1, "tags": ["a"]}}
        )
    ]
    assert check_calls(ok, tools) == []
    bad = [
        ToolCall(
            name="get_weather",
            arguments={"unit": "k", "days": True, "zzz": 1, "where": {"tags": [1]}},
        ),
        ToolCall(name="nope", arguments={}),
    ]
    got = {(v.call_index, v.rule, v.param) for v in check_calls(bad, tools)}
    assert got == {
        (0, "missing_required", "city"),
        (0, "enum", "unit"),
        (0, "type", "days"),
        (0, "unknown_param", "zzz"),
        (0, "type", "where.tags.0"),
        (1, "unknown_function", ""),
    }
    # 2.0 is an acceptable integer value in JSON schema; "2" is not
    assert (
        check_calls([ToolCall(name="get_weather", arguments={"city": "x", "days": 2.0})], tools)
        == []
    )
    assert (
        check_calls([ToolCall(name="get_weather", arguments={"city": "x", "days": "2"})], tools)[
            0
        ].rule
        == "type"
    )
