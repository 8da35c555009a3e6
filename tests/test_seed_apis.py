"""API synthesis (template synthesizer + rule validation) and tool-file import."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from looptool.seed.apis import build_pool, draw_apis, synthesize_spec, validate_api
from looptool.seed.imports import ToolImportError, import_tools
from looptool.seed.trees import load_trees

TREES = load_trees("data/trees/context_tree.yaml", "data/trees/constraint_tree.yaml")
CONS = {
    "naming": "snake_case",
    "params": [2, 4],
    "required": "most",
    "types": ["enum"],
    "output": "list",
}


def _spec(**over):
    spec = {
        "name": "search_hotels",
        "description": "Find hotels.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City"},
                "room": {"type": "string", "enum": ["single", "double"], "description": "Room"},
            },
            "required": ["city"],
        },
        "returns": {
            "type": "array",
            "items": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    }
    spec.update(over)
    return spec


def test_template_synthesizer_meets_feasible_constraints():
    fallback = TREES.constraint.fallback_fields
    ok = 0
    for i, (_cpath, leaf) in enumerate(TREES.context_leaves):
        cons = TREES.constraint_leaves[(i * 37) % len(TREES.constraint_leaves)][1]
        spec = synthesize_spec(leaf, cons, fallback, random.Random(i))
        _, _, problems = validate_api(spec, cons, set())
        keys = sum(f.key for f in leaf.fields)
        feasible = keys + len(cons["types"]) <= cons["params"][1] and not (
            cons["required"] == "one" and keys > 1
        )
        if feasible:
            assert problems == [], (leaf.name, cons, problems)
            ok += 1
    assert ok > 40


@pytest.mark.parametrize(
    ("over", "cons", "needle"),
    [
        ({"name": "searchHotels"}, {}, "does not follow snake_case"),
        ({}, {"params": [3, 5]}, "parameter count 2 outside [3, 5]"),
        ({}, {"required": "all"}, "constraint 'all'"),
        ({}, {"types": ["enum", "array"]}, "missing required parameter types ['array']"),
        ({"returns": None}, {}, "missing 'returns'"),
        ({}, {"output": "envelope"}, "status and data"),
        (
            {
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "string", "minLength": -1}},
                }
            },
            {},
            "invalid JSON schema",
        ),
    ],
)
def test_rule_validation_names_the_problem(over, cons, needle):
    spec = {k: v for k, v in _spec(**over).items() if v is not None}
    _, _, problems = validate_api(spec, dict(CONS, **cons), set())
    assert any(needle in p for p in problems), problems


def test_pool_rejects_duplicates_and_unparseable_output():
    draws = [
        type(d)(d.index, d.context_path, d.leaf, d.constraint_path, CONS)
        for d in draw_apis(TREES, 3, seed=0)
    ]
    good = json.dumps(_spec())
    rows, rejects = build_pool(draws, [good, "```json\n" + good + "\n```", "no json here"], TREES)
    assert len(rows) == 1 and rows[0]["context_path"] == draws[0].context_path
    assert [r["tier"] for r in rejects] == ["dedup", "parse"]
    assert "duplicate name 'search_hotels'" in rejects[0]["reason"]
    assert "no JSON object" in rejects[1]["reason"]


def test_import_openai_bare_and_bfcl(tmp_path: Path):
    oa = tmp_path / "tools.json"
    oa.write_text(
        json.dumps(
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "description": "Weather.",
                            "parameters": {
                                "type": "object",
                                "properties": {"city": {"type": "string"}},
                            },
                        },
                    },
                    {
                        "name": "convert",
                        "description": "Convert.",
                        "parameters": {"type": "object", "properties": {}},
                    },
                    {"description": "no name"},
                ]
            }
        )
    )
    rows, rejects = import_tools(oa)
    assert [r["name"] for r in rows] == ["get_weather", "convert"]
    assert rows[0]["source"] == "import" and rows[0]["domain"] == "import:tools"
    assert (
        len(rejects) == 1
        and rejects[0]["item_id"] == "tools.json:1#2"
        and "missing function name" in rejects[0]["reason"]
    )
    bfcl = tmp_path / "bfcl.json"
    doc = {
        "name": "math.factorial",
        "description": "Factorial.",
        "parameters": {
            "type": "dict",
            "properties": {"number": {"type": "integer"}},
            "required": ["number"],
        },
    }
    bfcl.write_text(
        "\n".join(
            json.dumps({"id": f"simple_{i}", "question": [], "function": [doc]}) for i in range(2)
        )
    )
    taken = {"get_weather"}
    rows, rejects = import_tools(bfcl, "bfcl", taken=taken)
    assert [r["name"] for r in rows] == ["math.factorial"]
    assert json.loads(rows[0]["spec"])["parameters"]["type"] == "object"
    assert rejects == []  # the same spec again is counted as a repeat, not a bad record


@pytest.mark.parametrize(
    ("content", "fmt", "needle"),
    [
        ('[{"name": "a",}]', "auto", "line 1 column"),
        ('{"id": 1, "function": [}\n{"id": 2, "function": [}', "auto", "no line is valid JSON"),
        ('"just a string"', "auto", "expected JSON lines, a JSON list of records"),
        ('{"id": 1, "function": {"name": "a"}}', "bfcl", "must be a list of docs"),
        ('{"name": "a"}\n{"name": "b"}', "bfcl", "bad.json:1: not a BFCL entry"),
        ("", "auto", "file is empty"),
    ],
)
def test_malformed_tool_files_give_a_clear_error(tmp_path: Path, content, fmt, needle):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ToolImportError) as ei:
        import_tools(p, fmt)
    assert str(p) in str(ei.value) and needle in str(ei.value)


def test_missing_tool_file(tmp_path: Path):
    with pytest.raises(ToolImportError, match="tool file not found"):
        import_tools(tmp_path / "nope.json")


def test_import_rejects_an_invalid_json_schema_type_with_a_reason(tmp_path: Path):
    p = tmp_path / "typo.json"
    good = {"name": "ok", "parameters": {"type": "object", "properties": {"q": {"type": "str"}}}}
    typo = {
        "name": "typo",
        "parameters": {"type": "object", "properties": {"q": {"type": "strng"}}},
    }
    p.write_text(json.dumps([good, typo]))
    rows, rejects = import_tools(p)
    assert [r["name"] for r in rows] == ["ok"]
    assert json.loads(rows[0]["spec"])["parameters"]["properties"]["q"] == {"type": "string"}
    assert len(rejects) == 1 and rejects[0]["item_id"] == "typo.json:1#1"
    assert "unknown type 'strng'" in rejects[0]["reason"]
    assert "parameters.properties.q.type" in rejects[0]["reason"]


def test_import_where_every_entry_is_rejected_fails(tmp_path: Path):
    p = tmp_path / "all_bad.json"
    p.write_text(json.dumps([{"description": "no name"}, {"name": "x", "parameters": "nope"}]))
    with pytest.raises(ToolImportError, match="none of its 2 record"):
        import_tools(p)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"name": "taken_already"}]))
    with pytest.raises(ToolImportError, match="duplicate name 'taken_already'"):
        import_tools(dup, taken={"taken_already"})
