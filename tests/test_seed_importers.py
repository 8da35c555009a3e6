"""Importers (looptool.seed.importers), one fixture per format written from the format's
public description: the right tools (xLAM map-style parameters become JSON-schema
properties), the right samples, and every bad record rejected with line and reason.
Plus auto-detection, the `looptool seed import` dry run, and imports through the seed
stages (same verification tiers, origin ``import``, counts per file in the metrics).
The variants real dataset records showed have fixtures of our own in the same shapes; the
real records themselves are third-party text, not shipped: ``test_real_*`` read them from
``$LOOPTOOL_REAL_IMPORTS`` and are skipped without it."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from looptool.cli import main
from looptool.core.types import ToolCall
from looptool.params.seed import ToolImport
from looptool.seed.import_preview import preview_import
from looptool.seed.importers import FORMATS, ToolImportError, read_import
from looptool.seed.importers.base import RecordError
from looptool.seed.importers.dialogue import plan_acts
from looptool.seed.importers.toolace import parse_calls, safe_name, system_tools
from looptool.seed.imports import import_file

FIX = Path(__file__).parent / "fixtures" / "imports"
ROOT = Path(__file__).resolve().parents[1]


def _tools(res) -> dict[str, dict]:
    return {t.spec.name: t.spec.parameters for t in res.tools}


def _rejects(path: Path, fmt: str = "auto") -> list[tuple[int, str]]:
    return [(r["line"], r["reason"]) for r in preview_import(path, fmt)["rejects"]]  # type: ignore[arg-type]


def test_format_choices_match_the_params_model():
    fmt = ToolImport.model_fields["format"].annotation
    assert typing.get_args(fmt) == ("auto", *FORMATS)


def test_openai_chat_multi_step_parallel_and_refusal():
    res = read_import(FIX / "openai_chat.jsonl")
    assert res.format == "openai" and res.records == 5
    assert _tools(res)["get_order"]["required"] == ["order_id"]
    first, second = res.dialogues
    # tool results are named through tool_call_id; the system prompt is dropped
    assert [m.role for m in first.messages][:4] == ["user", "assistant", "tool", "assistant"]
    assert first.messages[2].name == "get_order" and "SH-77" in first.messages[2].content
    assert [c.arguments for c in second.messages[1].tool_calls] == [
        {"city": "Oslo"},
        {"city": "Lima"},
    ]
    out = preview_import(FIX / "openai_chat.jsonl")
    assert out["samples"] == 4  # 2 chained calls, 1 parallel step, 1 refusal
    rejects = _rejects(FIX / "openai_chat.jsonl")
    assert [ln for ln, _ in rejects] == [3, 4, 5]
    assert "unknown type 'strng'" in rejects[0][1]
    assert "message 0 is from the assistant" in rejects[1][1]
    assert "arguments is neither JSON nor a literal" in rejects[2][1]


def test_hermes_sharegpt_tool_call_blocks_and_clarify():
    res = read_import(FIX / "hermes.json")
    assert res.format == "hermes"
    # tools from the system prompt's non-empty <tools> block (Python-literal dump)
    assert _tools(res)["get_stock_price"]["properties"]["symbol"]["type"] == "string"
    stock, post = res.dialogues
    assert stock.messages[1].tool_calls[0].arguments == {"symbol": "AAPL"}
    assert json.loads(stock.messages[2].content) == {"symbol": "AAPL", "price": 189.5}
    assert [m.role for m in post.messages] == [
        "user", "assistant", "user", "assistant", "tool", "assistant"
    ]  # fmt: skip
    out = preview_import(FIX / "hermes.json")
    assert out["samples"] == 3  # one call; the clarifying question + the call after it
    assert _rejects(FIX / "hermes.json") == [
        (24, "message 1: unknown role 'bot'"),
        (32, "no tools (no 'tools' or 'functions' field, no <tools> in the system prompt)"),
    ]


def test_xlam_map_style_parameters_become_json_schema():
    res = read_import(FIX / "xlam.json")
    assert res.format == "xlam"
    tools = _tools(res)
    assert tools["ferry_departures_by_slot"] == {
        "type": "object",
        "properties": {
            "slot": {
                "type": "string",
                "description": "The time slot (e.g., morning, evening, night).",
                "default": "morning",
            }
        },
    }  # a parameter with a default is not required (xlam_defaults.json below)
    s = tools["sum_numbers"]
    assert s["properties"]["numbers"] == {
        "type": "array",
        "items": {"type": "integer"},
        "description": "The numbers to add.",
    }
    assert s["properties"]["decimals"]["type"] == "integer"
    assert s["properties"]["decimals"]["default"] == 0
    assert s["properties"]["labels"] == {"type": "object", "description": "Optional labels."}
    assert s["required"] == ["numbers"]  # ", optional" params are not required
    calls = res.dialogues[0].messages[1].tool_calls
    assert [c.arguments for c in calls] == [{"slot": "morning"}, {"slot": "evening"}]
    assert preview_import(FIX / "xlam.json")["samples"] == 2
    rejects = _rejects(FIX / "xlam.json")
    assert [ln for ln, _ in rejects] == [4, 5]
    assert "'search'.parameters.text.type: unknown type 'strng'" in rejects[0][1]
    assert rejects[1][1] == "'answers' is empty: the record has no label"


def test_toolace_tools_in_the_system_prompt_and_python_calls():
    res = read_import(FIX / "toolace.json")
    assert res.format == "toolace"
    tools = _tools(res)
    assert set(tools) == {"Get_Trending_Videos", "calculateBMI"}  # spaces -> "_"
    assert tools["Get_Trending_Videos"]["properties"]["limit"]["type"] == "integer"
    videos, bmi = res.dialogues
    call = videos.messages[1].tool_calls[0]
    assert (call.name, call.arguments) == ("Get_Trending_Videos", {"region": "US", "limit": 5})
    assert videos.messages[2].name == "Get_Trending_Videos"
    assert bmi.messages[3].tool_calls[0].arguments == {"weight": 70.5, "height": 1.8}
    assert preview_import(FIX / "toolace.json")["samples"] == 3
    rejects = _rejects(FIX / "toolace.json")
    assert [ln for ln, _ in rejects] == [20, 27]
    assert "positional arguments" in rejects[0][1]
    assert rejects[1][1] == "no JSON list of functions in the system prompt"


def test_bfcl_first_acceptable_value_is_the_label():
    path = FIX / "bfcl" / "BFCL_v4_simple_python.json"
    res = read_import(path)  # answers from possible_answer/<same name>
    assert res.format == "bfcl"
    assert _tools(res)["calculate_triangle_area"]["type"] == "object"  # BFCL "dict"
    tri, hyp = res.dialogues
    assert tri.messages[-1].tool_calls[0].arguments == {"base": 10, "height": 5, "unit": "units"}
    assert hyp.messages[-1].tool_calls[0].arguments == {"x": 4, "y": 5}  # "" first: left out
    assert preview_import(path)["samples"] == 2
    assert _rejects(path) == [
        (3, "multi-turn entry (2 turns): only single-turn entries are imported"),
        (4, "no possible answer for id 'simple_python_3'"),
    ]


def test_bfcl_without_answers_imports_tools_only(tmp_path):
    lone = tmp_path / "questions.json"
    lone.write_text((FIX / "bfcl" / "BFCL_v4_simple_python.json").read_text())
    res = read_import(lone)
    assert res.dialogues == [] and len(res.tools) == 4 and res.rejects == []


def test_toolbench_tool_document():
    res = read_import(FIX / "toolbench.json")
    assert res.format == "toolbench" and res.dialogues == []
    tools = _tools(res)
    fc = tools["get_forecast_by_coordinates_for_weather_forecast_14_days"]
    assert fc["required"] == ["lat", "lon"]
    assert fc["properties"]["lat"]["type"] == "number"
    assert fc["properties"]["units"] == {"type": "string", "description": "metric or imperial"}
    assert "required" not in tools["list_cities_for_weather_forecast_14_days"]
    assert _rejects(FIX / "toolbench.json") == [
        (1, "tool#2 required_parameters 'file': unknown RapidAPI type 'BINARY'")
    ]


def test_auto_detection_fails_clearly_and_answer_files_are_named(tmp_path):
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"prompt": "x", "completion": "y"}\n')
    with pytest.raises(ToolImportError, match=r"odd.jsonl: line 1: no import format fits"):
        read_import(odd)
    with pytest.raises(ToolImportError, match="possible-answer file"):
        read_import(FIX / "bfcl" / "possible_answer" / "BFCL_v4_simple_python.json")
    # an explicit format that does not fit: every record is a reject with the reason
    out = preview_import(FIX / "xlam.json", "toolbench")
    assert out["tools"] == [] and out["samples"] == 0
    assert {r["reason"] for r in out["rejects"]} == {
        "not a ToolBench record (a tool document needs 'tool_name' and 'api_list', an "
        "instruction 'query' and 'api_list', an answer file 'answer_generation')"
    }


def test_cli_dry_run_json_and_text(tmp_path):
    runner = CliRunner()
    before = sorted(p.name for p in FIX.iterdir())
    res = runner.invoke(main, ["seed", "import", str(FIX / "xlam.json"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {"tools", "samples", "rejects"}
    assert out["tools"] == [
        {"name": "ferry_departures_by_slot", "parameters": ["slot"]},
        {"name": "sum_numbers", "parameters": ["decimals", "labels", "numbers"]},
    ]
    assert out["samples"] == 2 and [r["line"] for r in out["rejects"]] == [4, 5]
    res = runner.invoke(main, ["seed", "import", str(FIX / "toolbench.json")])
    assert res.exit_code == 0
    assert "format toolbench" in res.output and "line 1: tool#2" in res.output
    assert "list_cities_for_weather_forecast_14_days(country)" in res.output
    odd = tmp_path / "odd.json"
    odd.write_text('{"prompt": "x"}')
    res = runner.invoke(main, ["seed", "import", str(odd)])
    assert res.exit_code == 1 and "no import format fits" in res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in FIX.iterdir()) == before  # a dry run writes nothing


def test_a_bad_json_line_is_a_reject_row_not_a_failed_file(tmp_path):
    p = tmp_path / "tools.jsonl"
    p.write_text('{"name": "ok"}\n{"name": "broken",\n\n{"name": "fine"}\n')
    res = read_import(p)
    assert [t.spec.name for t in res.tools] == ["ok", "fine"]
    assert [(r.line, r.reason) for r in res.rejects] == [
        (2, "invalid JSON: Expecting property name enclosed in double quotes")
    ]


def test_repeated_tools_are_counted_and_name_clashes_rejected(tmp_path):
    rec = json.loads((FIX / "xlam.json").read_text())[0]
    p = tmp_path / "rep.jsonl"
    p.write_text("\n".join(json.dumps(rec) for _ in range(3)))
    f = import_file(p)
    assert len(f.apis) == 1 and f.repeated_tools == 2 and len(f.dialogues) == 3
    assert len(import_file(p, limit=2).dialogues) == 2  # limit counts records
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "a"}, {"name": "a", "description": "other"}]))
    f = import_file(tools, taken={"b"})
    assert [r.tier for r in f.rejects] == ["dedup"]
    assert "a different spec came earlier" in f.rejects[0].reason


# --- variants real records showed (our own records in the same shapes; README: "Checked on
# real records") ---


def _kinds(dialogue) -> list[str]:
    return [t.kind for t in plan_acts(dialogue.messages)[0].turns]


def test_xlam_a_parameter_with_a_default_is_not_required():
    """xLAM labels leave out parameters that have a default but no ", optional"."""
    path = FIX / "xlam_defaults.json"
    res = read_import(path)
    assert res.format == "xlam" and res.records == 3
    tools = _tools(res)
    tide = tools["tide_height"]
    assert tide["required"] == ["harbor"]
    assert tide["properties"]["hours_ahead"]["default"] == 6
    assert "default" not in tide["properties"]["days"]  # "3" is no int: dropped, still optional
    assert tools["sunrise_time"]["required"] == ["place"]  # an empty default is no default
    assert tools["convert_amount"]["required"] == ["amount", "rate"]  # default 0 counts
    calls = res.dialogues[0].messages[1].tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("tide_height", {"harbor": "Tromso"}),
        ("sunrise_time", {"place": "Tromso"}),
    ]
    out = preview_import(path)
    assert out["tools"] == [
        {"name": "tide_height", "parameters": ["days", "harbor", "hours_ahead"]},
        {"name": "sunrise_time", "parameters": ["date", "place"]},
        {"name": "convert_amount", "parameters": ["amount", "rate", "round_to"]},
    ]
    assert out["samples"] == 2
    assert _rejects(path) == [
        (
            4,
            "rules: message 1: call 0 to sunrise_time: missing_required: 'place' is a "
            "required property",
        )
    ]


def test_toolace_names_with_slashes_and_dashes_are_calls():
    path = FIX / "toolace_names.json"
    res = read_import(path)
    assert res.format == "toolace" and res.records == 2
    assert set(_tools(res)) == {"weather_get-forecast", "_tide-times", "Sea_Temperature"}
    (d,) = res.dialogues
    calls = [[(c.name, c.arguments) for c in m.tool_calls] for m in d.messages if m.tool_calls]
    assert calls == [
        [("weather_get-forecast", {"city": "Oslo", "days": 3})],
        [("_tide-times", {"harbor": "Bergen"}), ("Sea_Temperature", {"location": "Bergen"})],
    ]
    assert [m.name for m in d.messages if m.role == "tool"] == [
        "weather_get-forecast", "_tide-times", "Sea_Temperature"
    ]  # fmt: skip
    assert _kinds(d) == ["single", "parallel"]
    assert preview_import(path)["samples"] == 2
    # a listed tool in call position, but the list also holds a plain string: no call list
    text = '[weather/get-forecast(city="Oslo"), "Bergen"]'
    assert _rejects(path) == [(3, f"a call of a listed tool, but no call list: {text!r}")]


def test_toolace_call_lists_with_names_python_cannot_parse():
    """``[weather/get-forecast()]`` parses as a subtraction: without the placeholders the
    call was kept as assistant prose."""
    names = ("weather/get-forecast", "/tide-times", "Sea Temperature")
    renames = {n: safe_name(n) for n in names}
    assert parse_calls("[weather/get-forecast()]", renames) == [
        ToolCall(name="weather_get-forecast", arguments={})
    ]
    both = '[/tide-times(harbor="Bodo"), Sea Temperature(location="Bodo")]'
    assert parse_calls(both, renames) == [
        ToolCall(name="_tide-times", arguments={"harbor": "Bodo"}),
        ToolCall(name="Sea_Temperature", arguments={"location": "Bodo"}),
    ]
    with pytest.raises(RecordError, match="a call of a listed tool, but no call list"):
        parse_calls('[weather/get-forecast(city="Oslo") + 1]', renames)
    assert parse_calls("[Tip: the forecast covers a week]", renames) is None  # prose stays
    # a tool name inside a string argument is the string's own text, kept as it was
    inner = '[weather/get-forecast(city="Oslo, weather/get-forecast(x)")]'
    assert parse_calls(inner, renames) == [
        ToolCall(name="weather_get-forecast", arguments={"city": "Oslo, weather/get-forecast(x)"})
    ]


def test_toolace_reexported_for_llamafactory():
    """ToolACE records with LLaMA-Factory speakers (human / gpt / function_call with JSON
    calls / observation); a name the exporter cut short is a rule reject."""
    path = FIX / "toolace_llamafactory.json"
    res = read_import(path)
    assert res.format == "toolace" and res.records == 2
    snow, cut = res.dialogues
    assert [m.role for m in snow.messages][:6] == [
        "user", "assistant", "user", "assistant", "tool", "assistant"
    ]  # fmt: skip
    assert snow.messages[3].tool_calls[0].name == "weather_get-forecast"
    assert [c.name for c in snow.messages[7].tool_calls] == ["_tide-times", "Sea_Temperature"]
    assert [m.name for m in snow.messages[8:10]] == ["_tide-times", "Sea_Temperature"]
    assert _kinds(snow) == ["clarify", "parallel", "irrelevant"]
    assert cut.messages[1].tool_calls[0].name == "Temperature"
    out = preview_import(path)
    assert out["samples"] == 4
    assert _rejects(path) == [
        (
            3,
            "rules: message 1: call 0 to Temperature: unknown_function: no tool named "
            "'Temperature'",
        )
    ]


def test_llamafactory_sharegpt_function_call_and_observation_turns():
    """LLaMA-Factory's ShareGPT layout (as its Glaive demo): tools as JSON text, calls in
    function_call turns (one call or a list), results in observation turns."""
    path = FIX / "llamafactory_sharegpt.json"
    res = read_import(path)
    assert res.format == "hermes" and res.records == 2
    assert _tools(res)["translate_text"]["required"] == ["text", "target"]
    (d,) = res.dialogues
    assert [m.role for m in d.messages] == [
        "user", "assistant", "tool", "assistant", "user", "assistant", "tool", "tool", "assistant"
    ]  # fmt: skip
    assert d.messages[1].tool_calls[0].arguments == {"text": "the quick red fox"}
    assert [c.arguments["target"] for c in d.messages[5].tool_calls] == ["de", "nl"]
    assert [m.name for m in d.messages if m.role == "tool"] == ["count_words"] + 2 * [
        "translate_text"
    ]
    assert json.loads(d.messages[7].content) == {"translation": "goede nacht"}
    assert _kinds(d) == ["single", "parallel"]
    assert preview_import(path)["samples"] == 2
    assert _rejects(path) == [(3, "message 1 function_call is neither JSON nor a literal")]


def test_openai_legacy_function_call_messages():
    path = FIX / "openai_function_call.jsonl"
    res = read_import(path)
    assert res.format == "openai" and res.records == 3
    euro, pound = res.dialogues
    assert [m.role for m in euro.messages] == ["user", "assistant", "tool", "assistant"]
    call = euro.messages[1].tool_calls[0]
    assert (call.name, call.arguments) == ("get_exchange_rate", {"base": "EUR", "quote": "CHF"})
    assert euro.messages[2].name == "get_exchange_rate"
    assert pound.messages[1].content == "Let me look that up."  # text beside the call stays
    assert pound.messages[1].tool_calls[0].arguments == {"base": "GBP", "quote": "JPY"}
    # the pound record lists its tools in the older top-level `functions` field
    assert "tools" not in json.loads(path.read_text().splitlines()[1])
    assert [t.spec.name for t in res.tools if t.spec] == ["get_exchange_rate"] * 2
    assert preview_import(path)["samples"] == 2
    assert _rejects(path) == [
        (3, "message 1 function_call: arguments is neither JSON nor a literal")
    ]


def test_toolbench_instruction_records_give_tools_only():
    path = FIX / "toolbench_query.json"
    res = read_import(path)
    assert res.format == "toolbench" and res.records == 3 and res.dialogues == []
    tools = _tools(res)
    assert set(tools) == {
        "next_departures_for_ferry_schedules",
        "list_ports_for_ferry_schedules",
        "get_7_day_timetable_for_ferry_schedules",
        # <api>_for_<tool>, the last 64 characters kept
        "ng_date_for_nordic_coastal_express_passenger_information_service",
    }
    nxt = tools["next_departures_for_ferry_schedules"]
    assert nxt["required"] == ["port"] and nxt["properties"]["limit"]["type"] == "number"
    assert tools["list_ports_for_ferry_schedules"] == {"type": "object", "properties": {}}
    f = import_file(path)
    assert len(f.apis) == 4 and f.repeated_tools == 1 and f.dialogues == []
    assert preview_import(path)["samples"] == 0
    assert _rejects(path) == [(121, "tool#0: an API needs its 'tool_name'")]


def test_toolbench_answer_file_last_trajectory_and_finish_answer():
    path = FIX / "toolbench_answer.json"
    res = read_import(path)
    assert res.format == "toolbench" and res.records == 1
    tools = _tools(res)  # the pseudo-tool Finish is not a tool
    assert set(tools) == {"list_ports_for_ferry_schedules", "next_departures_for_ferry_schedules"}
    assert tools["next_departures_for_ferry_schedules"]["required"] == ["port"]
    (d,) = res.dialogues  # the last train_messages list; the retry prompt is left out
    assert [m.role for m in d.messages] == [
        "user", "assistant", "tool", "assistant", "tool", "assistant"
    ]  # fmt: skip
    assert d.messages[0].content == (
        "Which ports do the ferries serve, and when does the next boat leave Bodo?"
    )  # without "Begin!"
    assert [m.content for m in d.messages if m.role == "assistant"][:2] == ["", ""]  # thoughts
    assert d.messages[3].tool_calls[0].arguments == {"port": "Bodo", "limit": 1}
    assert d.messages[4].name == "next_departures_for_ferry_schedules"
    assert d.messages[5].tool_calls == []
    assert d.messages[5].content == (
        "The ferries serve Bodo, Moskenes and Svolvaer; the next boat leaves Bodo at 15:30 "
        "for Moskenes."
    )
    assert _kinds(d) == ["multi_step"]
    out = preview_import(path)
    assert out["samples"] == 2 and out["rejects"] == []


def test_toolbench_answer_files_that_gave_up_are_rejects():
    path = FIX / "toolbench_answers_bad.jsonl"
    res = read_import(path)
    assert res.records == 4 and res.dialogues == [] and res.tools == []
    assert [(r.line, r.reason) for r in res.rejects] == [
        (1, "finish_type 'give_up': the trajectory gave up, it has no answer"),
        (2, "no train_messages (valid_data False): the search kept no trajectory"),
        (3, "Finish with return_type 'give_up_and_restart'"),
        (4, "the trajectory does not end with Finish's final answer"),
    ]


# --- real records of the public datasets: not shipped (third-party text); set
# LOOPTOOL_REAL_IMPORTS to a directory holding them (README: "Checked on real records") ---

REAL_ENV = "LOOPTOOL_REAL_IMPORTS"


def _real(name: str) -> Path:
    """A file of the real-records directory; the test is skipped without it."""
    root = os.environ.get(REAL_ENV, "")
    if not root:
        pytest.skip(
            f"{REAL_ENV} is not set: the real dataset excerpts are third-party text, not "
            "shipped (README: 'Checked on real records')"
        )
    path = Path(root) / name
    if not path.is_file():
        pytest.skip(f"{REAL_ENV}: {path} is missing")
    return path


def test_real_xlam_records_a_defaulted_parameter_is_not_required():
    res = read_import(_real("xlam_quoted.json"))
    assert res.format == "xlam" and res.records == 2
    tools = _tools(res)
    assert set(tools) == {"live_giveaways_by_type", "find_peak_element", "light_travel_time"}
    assert tools["find_peak_element"]["properties"]["nums"]["items"] == {"type": "integer"}
    assert tools["find_peak_element"]["required"] == ["nums"]
    light = tools["light_travel_time"]
    assert set(light["properties"]) == {"distance_in_light_years", "speed_of_light"}
    # record 8 calls it without speed_of_light (default 299792458, no ", optional"): the
    # dataset's executed label, so the parameter must not be required
    assert "required" not in light
    peak = res.dialogues[1].messages[1].tool_calls
    assert [(c.name, c.arguments) for c in peak] == [
        ("find_peak_element", {"nums": [44, 46, 48, 50, 52]}),
        ("light_travel_time", {"distance_in_light_years": 25}),
    ]
    assert [_kinds(d) for d in res.dialogues] == [["parallel"], ["parallel"]]
    out = preview_import(_real("xlam_quoted.json"))
    assert out["samples"] == 2 and out["rejects"] == []


def test_real_toolace_record_names_with_spaces_and_python_calls():
    res = read_import(_real("toolace_quoted.json"))
    assert res.format == "toolace" and res.records == 1
    tools = _tools(res)
    assert set(tools) == {
        "GetCompetitions",
        "Get_Manager_Placeholder_Image",
        "Search_Competition_API",
        "Get_Category_Image",
    }
    assert tools["Get_Manager_Placeholder_Image"]["required"] == ["sport"]
    assert tools["Get_Category_Image"]["properties"]["slug"]["default"] == "france"
    (d,) = res.dialogues
    image = d.messages[7].tool_calls[0]
    assert (image.name, image.arguments) == ("Get_Manager_Placeholder_Image", {"sport": "football"})
    assert d.messages[8].name == "Get_Manager_Placeholder_Image"
    assert _kinds(d) == ["single", "irrelevant", "single"]
    out = preview_import(_real("toolace_quoted.json"))
    assert out["samples"] == 3 and out["rejects"] == []


def test_real_toolace_llamafactory_export_names_cut_by_its_converter_are_rejected():
    """The same ToolACE records re-exported for LLaMA-Factory (human / gpt / function_call
    / observation): the exporter's ``(\\w+)\\(`` cut "Get Manager Placeholder Image" to
    "Image", which the rule tier rejects; the intact record imports with its clarify turns."""
    path = _real("toolace_llamafactory_excerpt.json")
    res = read_import(path)
    assert res.format == "toolace" and res.records == 2
    competitions, nba = res.dialogues
    assert competitions.messages[7].tool_calls[0].name == "Image"
    assert nba.messages[3].tool_calls[0].arguments == {"season": "2025-2026"}
    assert _kinds(nba) == ["clarify", "irrelevant", "clarify"]
    assert "news_get-categories" in _tools(res)
    out = preview_import(path)
    assert out["samples"] == 5
    assert [(r["line"], r["reason"].split(";")[0]) for r in out["rejects"]] == [
        (2, "rules: message 7: call 0 to Image: unknown_function: no tool named 'Image'")
    ]


def test_real_llamafactory_function_call_turns_in_a_sharegpt_chat(tmp_path):
    """LLaMA-Factory's own layout: tools in a ``tools`` field, calls in function_call turns
    (the real NBA record with the two tools it calls moved there from its system prompt)."""
    rec = json.loads((_real("toolace_llamafactory_excerpt.json")).read_text())[1]
    rec["tools"] = json.dumps(system_tools(rec.pop("system"))[:2])
    p = tmp_path / "lf.json"
    p.write_text(json.dumps([rec]))
    res = read_import(p)
    assert res.format == "hermes"
    (d,) = res.dialogues
    assert [m.role for m in d.messages][:5] == ["user", "assistant", "user", "assistant", "tool"]
    assert d.messages[3].tool_calls[0].name == "allPlayersBySeason"
    assert d.messages[4].name == "allPlayersBySeason"


def test_real_glaive_record_in_llamafactory_sharegpt():
    """Glaive function-calling v2 as LLaMA-Factory ships it: function_call turns (JSON), tools
    as JSON text; these turns were 'unknown role' rejects before."""
    path = _real("glaive_llamafactory_demo.json")
    res = read_import(path)
    assert res.format == "hermes" and res.records == 1
    assert _tools(res)["calculate_area"]["required"] == ["shape", "dimensions"]
    assert set(_tools(res)) == {"calculate_area", "calculate_discount"}
    (d,) = res.dialogues
    calls = [m.tool_calls[0].arguments for m in d.messages if m.tool_calls]
    assert calls == [
        {"shape": "rectangle", "dimensions": [5, 3]},
        {"shape": "circle", "dimensions": [4]},
        {"shape": "square", "dimensions": [7]},
    ]
    assert d.messages[2].name == "calculate_area" and json.loads(d.messages[2].content) == {
        "area": 15
    }
    assert _kinds(d) == ["single", "single", "single"]
    out = preview_import(path)
    assert out["samples"] == 3 and out["rejects"] == []


def test_real_hermes_card_examples():
    path = _real("hermes_card_examples.json")
    res = read_import(path)
    assert res.format == "hermes" and res.records == 2
    tools = _tools(res)  # from a Python-literal <tools> dump
    assert list(tools) == ["search_flights"]
    assert tools["search_flights"]["required"] == [
        "departure_city", "destination_city", "departure_date", "return_date", "class"
    ]  # fmt: skip
    assert tools["search_flights"]["properties"]["flexible_cancellation"]["type"] == "boolean"
    (d,) = res.dialogues
    call = d.messages[1].tool_calls[0]
    assert call.name == "search_flights" and call.arguments["flexible_cancellation"] is True
    assert d.messages[2].name == "search_flights"
    assert json.loads(d.messages[2].content)["flights"][0]["flight_number"] == "AA118"
    assert _kinds(d) == ["single"]
    assert _rejects(path) == [
        (30, "no tools (no 'tools' or 'functions' field, no <tools> in the system prompt)")
    ]  # the JSON-mode example has no function to call
    assert preview_import(path)["samples"] == 1


def test_real_toolbench_instruction_file():
    path = _real("toolbench/G1_query.json")
    res = read_import(path)
    assert res.format == "toolbench" and res.records == 5 and res.dialogues == []
    tools = _tools(res)
    assert tools["checkhealth_for_squake"] == {"type": "object", "properties": {}}
    # ToolBench's own naming: <api>_for_<tool>, standardized, the last 64 characters kept
    task = tools["reate_task_service_tracking_code_for_transportistas_de_argentina"]
    assert task["required"] == ["service", "tracking_code"]
    quote = tools["o_weight_postcodesrc_postcodedst_for_transportistas_de_argentina"]
    assert quote["properties"]["weight"]["type"] == "number"
    out = preview_import(path)
    assert len(out["tools"]) == 12 and out["samples"] == 0 and out["rejects"] == []


def test_real_toolbench_answer_file_finish_becomes_the_answer():
    path = _real("toolbench/10_ChatGPT_DFS_woFilter_w2.json")
    res = read_import(path)
    assert res.format == "toolbench" and res.records == 1
    tools = _tools(res)  # the pseudo-tool Finish is not a tool
    assert set(tools) == {"transitaire_for_transitaires", "transitaires_for_transitaires"}
    assert tools["transitaire_for_transitaires"]["required"] == ["is_id"]
    (d,) = res.dialogues
    assert [m.role for m in d.messages] == [
        "user", "assistant", "tool", "assistant", "tool", "assistant"
    ]  # fmt: skip
    ag = json.loads(path.read_text())["answer_generation"]
    asked = ag["train_messages"][-1][1]["content"]
    assert d.messages[0].content == asked.strip().removesuffix("Begin!").strip()
    assert d.messages[3].tool_calls[0].arguments == {"is_id": "ACT_AGENCE_CALEDONIENNE_DE_TRANSIT"}
    assert d.messages[4].name == "transitaire_for_transitaires"
    assert d.messages[5].tool_calls == []
    finish = json.loads(ag["train_messages"][-1][-1]["function_call"]["arguments"])
    assert d.messages[5].content == finish["final_answer"].strip()
    assert _kinds(d) == ["multi_step"]
    out = preview_import(path)
    assert out["samples"] == 2 and out["rejects"] == []


def test_real_toolbench_answer_file_bad_trajectories(tmp_path):
    rec = json.loads(_real("toolbench/10_ChatGPT_DFS_woFilter_w2.json").read_text())
    gen = rec["answer_generation"]

    def reasons(**change) -> list[tuple[int, str]]:
        p = tmp_path / "answer.json"
        p.write_text(json.dumps(dict(rec, answer_generation=dict(gen, **change))))
        return [(r.line, r.reason) for r in read_import(p).rejects]

    assert reasons(finish_type="give_up") == [
        (1, "finish_type 'give_up': the trajectory gave up, it has no answer")
    ]
    assert reasons(train_messages=[], valid_data=False) == [
        (1, "no train_messages (valid_data False): the search kept no trajectory")
    ]
    last = gen["train_messages"][-1]
    gave_up = json.loads(last[-1]["function_call"]["arguments"])
    gave_up["return_type"] = "give_up_and_restart"
    call = dict(last[-1]["function_call"], arguments=json.dumps(gave_up))
    assert reasons(train_messages=[[*last[:-1], dict(last[-1], function_call=call)]]) == [
        (1, "Finish with return_type 'give_up_and_restart'")
    ]
    # the DFS restart prompt is search control, not the user: dropped, the path stays
    restart = {"role": "user", "content": "This is not the first time you try this task, ..."}
    p = tmp_path / "restart.json"
    messages = [*last[:4], restart, *last[4:]]
    p.write_text(json.dumps(dict(rec, answer_generation=dict(gen, train_messages=[messages]))))
    (d,) = read_import(p).dialogues
    assert [m.role for m in d.messages].count("user") == 1 and len(d.messages) == 6


def _params(tmp: Path, imports: list[dict]) -> Path:
    raw = {
        "project": {"seed": 0, "cache_dir": str(tmp / "cache")},
        "engines": {"generator": {"backend": "template"}},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
        "seed": {
            "trees": {
                "context": str(ROOT / "data/trees/context_tree.yaml"),
                "constraint": str(ROOT / "data/trees/constraint_tree.yaml"),
            },
            "apis": {"n_draws": 12, "imports": imports},
            "dialogues": {"n_dialogues": 6},
            "heldout_fraction": 0.0,
        },
    }
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_imports_flow_through_the_seed_stages(tmp_path):
    from looptool.params import load_params
    from looptool.seed.pipeline import run_apis, run_dialogues, run_verify
    from looptool.seed.stage_samples import run_samples

    imports = [
        {"path": str(FIX / "xlam.json")},
        {"path": str(FIX / "toolace.json"), "format": "toolace"},
        {"path": str(FIX / "hermes.json"), "samples": False},
    ]
    params = load_params(_params(tmp_path, imports))
    out = tmp_path / "seed"
    m_apis = run_apis(params, out)
    assert m_apis["imports"][str(FIX / "xlam.json")] == {
        "format": "xlam",
        "records": 4,
        "tools": 2,
        "repeated_tools": 0,
        "tool_variants": 0,
        "dialogues": 2,
        "rejected": 2,
    }
    assert m_apis["imports"][str(FIX / "hermes.json")]["dialogues"] == 0  # tools only
    assert m_apis["imported_dialogues"] == 4
    rejects = pq.read_table(out / "api_rejects.parquet").to_pylist()
    assert any(r["item_id"] == "xlam.json:4" and "strng" in r["reason"] for r in rejects)
    run_dialogues(params, out)
    m_verify = run_verify(params, out)
    assert m_verify["imported"] == 4 and m_verify["verified_imported"] == 4
    m_samples = run_samples(params, out)
    rows = pq.read_table(out / "samples.parquet").to_pylist()
    imported = [r for r in rows if r["origin"] == "import"]
    assert {r["dialogue_id"] for r in imported} == {
        f"import:{FIX / 'xlam.json'}:2",
        f"import:{FIX / 'xlam.json'}:3",
        f"import:{FIX / 'toolace.json'}:2",
        f"import:{FIX / 'toolace.json'}:11",
    }
    assert {r["kind"] for r in imported} == {"parallel", "single", "clarify"}
    assert m_samples["imports"] == {
        str(FIX / "toolace.json"): {"format": "toolace", "dialogues": 2, "train": 3, "heldout": 0},
        str(FIX / "xlam.json"): {"format": "xlam", "dialogues": 2, "train": 2, "heldout": 0},
    }
    assert all(r["origin"] == "seed" for r in rows if r not in imported)


def test_check_params_keeps_bfcl_answer_files_inside_data_tools(tmp_path):
    from looptool.params import load_params
    from looptool.params.tracked import untracked_inputs

    imports = [{"path": "data/tools/q.json", "answers": "/elsewhere/answers.json"}]
    problems = untracked_inputs(load_params(_params(tmp_path, imports)))
    assert problems == [
        "seed.apis.imports[0].answers: '/elsewhere/answers.json' is not inside data/tools/, "
        "the folder stage seed_apis depends on; copy the file there"
    ]


def _xlam_records(n: int) -> list[dict]:
    tool = {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"city": {"type": "str", "description": "The city."}},
    }
    return [
        {
            "query": f"What is the weather in city number {k}?",
            "tools": [tool],
            "answers": [{"name": "get_weather", "arguments": {"city": f"City{k}"}}],
        }
        for k in range(n)
    ]


def test_records_on_one_line_get_their_own_stable_dialogue_ids(tmp_path):
    """json.dump(records, f) writes one line: every record still gets its own id."""
    from looptool.seed.samples import build_samples

    p = tmp_path / "one_line.json"
    p.write_text(json.dumps(_xlam_records(20)))
    assert "\n" not in p.read_text()
    rows = import_file(p).dialogues
    ids = [r["dialogue_id"] for r in rows]
    assert len(set(ids)) == 20
    assert ids[0] == f"import:{p}:1#0" and ids[19] == f"import:{p}:1#19"
    assert [r["dialogue_id"] for r in import_file(p).dialogues] == ids  # stable on reruns
    # one record per line keeps the plain file:line id
    q = tmp_path / "lines.jsonl"
    q.write_text("\n".join(json.dumps(r) for r in _xlam_records(2)))
    assert [r["dialogue_id"] for r in import_file(q).dialogues] == [
        f"import:{q}:1",
        f"import:{q}:2",
    ]
    # the held-out split works per dialogue: half of the records, not all or none
    train, heldout, rejects, _ = build_samples(rows, 0.5, seed=0, no_call_acts=set())
    assert (len(train), len(heldout), rejects) == (10, 10, [])


def test_a_single_xlam_object_with_tools_is_a_dialogue_not_just_tools(tmp_path):
    """One xLAM record as a whole file: its query and answers are imported, not dropped."""
    p = tmp_path / "one.json"
    p.write_text(json.dumps(_xlam_records(1)[0], indent=2))
    res = read_import(p)
    assert res.format == "xlam" and res.records == 1 and res.rejects == []
    assert [t.spec.name for t in res.tools] == ["get_weather"]
    (d,) = res.dialogues
    assert d.messages[0].content == "What is the weather in city number 0?"
    assert d.messages[1].tool_calls[0].arguments == {"city": "City0"}
    # a record whose query has no answers is no tool list either: it fails with a reason
    q = tmp_path / "no_answers.json"
    q.write_text(json.dumps({"query": "Weather in Oslo?", "tools": _xlam_records(1)[0]["tools"]}))
    with pytest.raises(ToolImportError, match=r"no_answers.json: line 1: no import format fits"):
        read_import(q)
    # a plain {"tools": [...]} file is still read as its tool list
    t = tmp_path / "tools.json"
    t.write_text(json.dumps({"tools": _xlam_records(1)[0]["tools"], "version": 2}))
    assert [x.spec.name for x in read_import(t).tools] == ["get_weather"]


def test_an_imported_request_without_a_question_mark_is_a_clarify_turn():
    """The import plan reads what an assistant text does, not whether it holds a "?"."""
    from looptool.core.types import Message as M

    call = ToolCall(name="get_weather", arguments={"city": "Paris"})
    messages = [
        M(role="user", content="What's the weather like?"),
        M(role="assistant", content="Please tell me which city you mean."),
        M(role="user", content="Paris."),
        M(role="assistant", tool_calls=[call]),
    ]
    plan, acts = plan_acts(messages)
    (turn,) = plan.turns
    assert (turn.kind, turn.omit) == ("clarify", "city")
    assert acts[1]["act"] == "clarify"
    refusal = [
        M(role="user", content="Book me a flight."),
        M(role="assistant", content="Sorry, I cannot book flights. Is there anything else?"),
    ]
    assert [t.kind for t in plan_acts(refusal)[0].turns] == ["irrelevant"]
