"""Seed stages end to end: template default (small), byte-identical reruns, label noise,
clear stage errors, and the hf backend on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from looptool.core.rules import check_calls
from looptool.core.tables import sample_from_row
from looptool.params import load_params
from looptool.seed.pipeline import run_apis, run_dialogues, run_verify, stage_main
from looptool.seed.stage_samples import run_samples

ROOT = Path(__file__).resolve().parents[1]
STAGES = (run_apis, run_dialogues, run_verify, run_samples)
OUTPUTS = (
    "apis.parquet",
    "api_rejects.parquet",
    "imported.parquet",
    "simulated.parquet",
    "simulation_rejects.parquet",
    "dialogues.parquet",
    "dialogue_rejects.parquet",
    "samples.parquet",
    "heldout.parquet",
    "label_noise.parquet",
    "sample_rejects.parquet",
    "apis_metrics.json",
    "simulation_metrics.json",
    "verify_metrics.json",
    "metrics.json",
)


def _params(tmp: Path, seed: dict, engines: dict | None = None, name: str = "params.yaml") -> Path:
    seed = {
        "trees": {
            "context": str(ROOT / "data/trees/context_tree.yaml"),
            "constraint": str(ROOT / "data/trees/constraint_tree.yaml"),
        },
        **seed,
    }
    raw = {
        "project": {"seed": 0, "cache_dir": str(tmp / "cache")},
        "engines": engines or {"generator": {"backend": "template"}},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
        "seed": seed,
    }
    p = tmp / name
    p.write_text(yaml.safe_dump(raw))
    return p


SMALL = {"apis": {"n_draws": 150}, "dialogues": {"n_dialogues": 60}, "heldout_fraction": 0.2}


def _run(params_path: Path, out: Path) -> dict:
    params = load_params(params_path)
    return {fn.__name__: fn(params, out) for fn in STAGES}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("seed")
    _run(_params(tmp, SMALL), tmp / "a")
    return tmp


def _table(p: Path) -> list[dict]:
    return pq.read_table(p).to_pylist()


def test_samples_are_verified_rule_valid_and_split_by_dialogue(small_run):
    out = small_run / "a"
    train, held = _table(out / "samples.parquet"), _table(out / "heldout.parquet")
    assert len(train) + len(held) >= 130  # 142 with the seeded template data (measured)
    for row in train + held:
        s = sample_from_row(row)
        assert s.sample_id == row["sample_id"]
        assert check_calls(s.label.calls, s.tools) == []
        assert s.context[-1].role in ("user", "tool") and all(m.role != "system" for m in s.context)
        assert row["dialogue_id"] and row["step"] == len(s.context)
    assert not {r["dialogue_id"] for r in train} & {r["dialogue_id"] for r in held}
    n_dialogues = len(_table(out / "dialogues.parquet"))
    assert len({r["dialogue_id"] for r in held}) == round(0.2 * n_dialogues)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["kinds"]) == {"single", "parallel", "multi_step", "clarify", "irrelevant"}
    assert sum(metrics["kinds"].values()) == metrics["samples"] == len(train) + len(held)
    # steps after a tool result that reports an error are kept, not dropped
    assert metrics["samples_after_error_result"] > 0


def test_rejects_carry_tier_and_reason(small_run):
    out = small_run / "a"
    rejects = _table(out / "api_rejects.parquet") + _table(out / "dialogue_rejects.parquet")
    assert rejects and all(r["reason"] and r["tier"] for r in rejects)
    assert {"rules", "intent"} <= {r["tier"] for r in _table(out / "dialogue_rejects.parquet")}
    prov = json.loads(_table(out / "dialogues.parquet")[0]["provenance"])
    assert all(p["context_path"].count("/") == 2 and p["constraint_path"] for p in prov)


def test_rerun_with_the_same_seed_is_byte_identical(small_run):
    _run(_params(small_run, SMALL, name="again.yaml"), small_run / "b")
    for name in OUTPUTS:
        assert (small_run / "a" / name).read_bytes() == (small_run / "b" / name).read_bytes(), name


def test_label_noise_hits_the_fraction_and_records_clean_labels(small_run):
    noisy_dir = small_run / "noisy"
    noisy_dir.mkdir()
    shutil.copy(small_run / "a" / "dialogues.parquet", noisy_dir)
    params = load_params(_params(small_run, {**SMALL, "label_noise": 0.2}, name="noise.yaml"))
    metrics = run_samples(params, noisy_dir)
    clean = {r["sample_id"]: r for r in _table(small_run / "a" / "samples.parquet")}
    noisy = _table(noisy_dir / "samples.parquet")
    records = _table(noisy_dir / "label_noise.parquet")
    assert len(records) == round(0.2 * len(noisy)) == metrics["label_noise"]["noisy"]
    assert [r["sample_id"] for r in noisy] == list(clean)
    changed = {r["sample_id"] for r in noisy if r["label"] != clean[r["sample_id"]]["label"]}
    assert changed == {r["sample_id"] for r in records}
    for rec in records:
        assert rec["clean_label"] == clean[rec["sample_id"]]["label"]
    assert {r["noise_kind"] for r in records} == {
        "wrong_value",
        "swapped_params",
        "wrong_function",
        "dropped_call",
        "type_error",
    }
    assert {r["schema_valid"] for r in records} == {True, False}
    # the held-out split is never noised
    assert _table(noisy_dir / "heldout.parquet") == _table(small_run / "a" / "heldout.parquet")


def test_stage_errors_are_clear(tmp_path, capsys):
    bad_tree = tmp_path / "ctx.yaml"
    text = (
        (ROOT / "data/trees/context_tree.yaml")
        .read_text()
        .replace("type: integer, min: 1, max: 14", "type: integr", 1)
    )
    bad_tree.write_text(text)
    p = _params(
        tmp_path,
        {
            "trees": {
                "context": str(bad_tree),
                "constraint": str(ROOT / "data/trees/constraint_tree.yaml"),
            }
        },
    )
    assert (
        stage_main("seed_apis", run_apis, ["--params", str(p), "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert str(bad_tree) in err and "travel/lodging/hotel_search" in err and "nights" in err
    bad_tools = tmp_path / "tools.json"
    bad_tools.write_text('[{"name": "x"')
    p = _params(
        tmp_path, {"apis": {"n_draws": 2, "imports": [{"path": str(bad_tools)}]}}, name="p2.yaml"
    )
    assert (
        stage_main("seed_apis", run_apis, ["--params", str(p), "--out", str(tmp_path / "o")]) == 2
    )
    assert f"{bad_tools}: line 1" in capsys.readouterr().err
    assert (
        stage_main(
            "seed_dialogues", run_dialogues, ["--params", str(p), "--out", str(tmp_path / "none")]
        )
        == 2
    )
    assert "table not found" in capsys.readouterr().err


@pytest.mark.slow
def test_hf_backend_on_the_tiny_model_end_to_end(tmp_path, tiny_model_dir):
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [
                {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "description": "City"}},
                        "required": ["city"],
                    },
                },
                {
                    "name": "convert",
                    "description": "Convert units.",
                    "parameters": {
                        "type": "object",
                        "properties": {"value": {"type": "number", "description": "Value"}},
                        "required": ["value"],
                    },
                },
            ]
        )
    )
    hf = {"backend": "hf", "model": str(tiny_model_dir), "batch_size": 16}
    seed = {
        "apis": {"n_draws": 3, "max_tokens": 16, "imports": [{"path": str(tools)}]},
        # the template planner lets the hf user/assistant/tool agents and judge run
        "dialogues": {
            "n_dialogues": 2,
            "turns": [1, 1],
            "agents": {"planner": "template"},
            "max_tokens": {"planner": 16, "user": 12, "assistant": 12, "tool": 12},
        },
        "verify": {"llm_tier": "judge", "max_tokens": 8},
    }
    p = _params(tmp_path, seed, {"generator": hf, "judge": hf})
    metrics = _run(p, tmp_path / "out")
    out = tmp_path / "out"
    api_rejects = _table(out / "api_rejects.parquet")
    assert metrics["run_apis"]["synthesized"] == 0 and len(api_rejects) == 3
    assert all(r["tier"] in ("parse", "rules") and r["reason"] for r in api_rejects)
    assert metrics["run_apis"]["imported"] == 2
    sim = metrics["run_dialogues"]
    assert sim["engines"]["generator"]["cache_misses"] > 0
    rejected = _table(out / "dialogue_rejects.parquet")
    assert len(rejected) >= 1 and all(r["reason"] for r in rejected)
    assert metrics["run_verify"]["verified"] + len(rejected) == 2
    # the LLM verification tier on the tiny judge: a constrained choice, reasons on FAIL
    from looptool.core.types import Message, ToolCall, ToolSpec
    from looptool.engines import make_engine
    from looptool.params.engines import EngineSpec
    from looptool.seed.roles import OPTIONS
    from looptool.seed.verify import judge_steps, steps_to_check

    spec = ToolSpec.from_any(json.loads(tools.read_text())[0])
    msgs = [
        Message(role="user", content="Weather in Oslo?"),
        Message(
            role="assistant", tool_calls=[ToolCall(name="get_weather", arguments={"city": "Oslo"})]
        ),
    ]
    plan = {
        "turns": [
            {"kind": "single", "steps": [[{"name": "get_weather", "arguments": {"city": "Oslo"}}]]}
        ]
    }
    steps = (
        steps_to_check("d", plan, msgs, [None, {"act": "call", "turn": 0, "step": 0}], {"call"}) * 3
    )
    judge = make_engine(EngineSpec(**hf), "judge")
    verdicts = judge_steps(steps, judge, {"d": [spec]}, reasons=True, max_tokens=8)
    assert len(verdicts) == 3 and all(v in OPTIONS for v, _ in verdicts)
    assert all(r for v, r in verdicts if v == "FAIL")
    # a rerun is answered from the request cache: resumable, nothing sent twice
    again = run_dialogues(load_params(p), tmp_path / "out")
    assert again["engines"]["generator"]["cache_misses"] == 0
    assert (
        again["engines"]["generator"]["cache_hits"] == sim["engines"]["generator"]["cache_misses"]
    )
