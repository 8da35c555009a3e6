"""Importers (looptool.seed.importers), one fixture per format written from the format's
public description: the right tools (xLAM map-style parameters become JSON-schema
properties), the right samples, and every bad record rejected with line and reason.
Plus auto-detection, the `looptool seed import` dry run, and imports through the seed
stages (same verification tiers, origin ``import``, counts per file in the metrics)."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from looptool.cli import main
from looptool.params.seed import ToolImport
from looptool.seed.importers import FORMATS, ToolImportError, read_import
from looptool.seed.imports import import_file, preview_import

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
        (32, "no tools (neither a 'tools' field nor <tools> in the system prompt)"),
    ]


def test_xlam_map_style_parameters_become_json_schema():
    res = read_import(FIX / "xlam.json")
    assert res.format == "xlam"
    tools = _tools(res)
    assert tools["live_giveaways_by_type"] == {
        "type": "object",
        "properties": {
            "type": {
                "type": "string",
                "description": "The type of giveaways to retrieve (e.g., game, loot, beta).",
                "default": "game",
            }
        },
        "required": ["type"],
    }
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
    assert [c.arguments for c in calls] == [{"type": "beta"}, {"type": "game"}]
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
        "not a ToolBench tool document (needs 'tool_name' and 'api_list')"
    }


def test_cli_dry_run_json_and_text(tmp_path):
    runner = CliRunner()
    before = sorted(p.name for p in FIX.iterdir())
    res = runner.invoke(main, ["seed", "import", str(FIX / "xlam.json"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {"tools", "samples", "rejects"}
    assert out["tools"] == [
        {"name": "live_giveaways_by_type", "parameters": ["type"]},
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
    from looptool.seed.pipeline import run_apis, run_dialogues, run_samples, run_verify

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
