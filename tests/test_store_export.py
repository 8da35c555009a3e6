"""`looptool export`: openai / sharegpt / parquet records rebuild the stored samples."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.core.codec import parse_completion, render_label
from looptool.core.prompting import policy_messages
from looptool.core.tables import label_from_json, sample_from_row
from looptool.store.export import ExportError, export_version


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    build(root, iters=2)
    return root


def _rows(project: Path, j: int) -> list[dict]:
    return pl.read_parquet(project / f"data/iter_{j}/dataset.parquet").to_dicts()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_openai_records(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "d2.jsonl"
    n = export_version("D2", "openai", out, root=project, date="2030-01-02")
    rows, recs = _rows(project, 2), _jsonl(out)
    assert n == len(rows) == len(recs)
    kinds = set()
    for row, rec in zip(rows, recs, strict=True):
        sample, label = sample_from_row(row), label_from_json(row["label"])
        kinds.add(row["kind"])
        msgs = rec["messages"]
        assert msgs[0] == policy_messages(sample, "2030-01-02")[0]  # the policy system prompt
        assert len(msgs) == len(sample.context) + 2
        assert [t["function"]["name"] for t in rec["tools"]] == [t.name for t in sample.tools]
        last = msgs[-1]
        assert last["role"] == "assistant" and last["weight"] == 1
        if label.calls:
            got = [
                (c["function"]["name"], json.loads(c["function"]["arguments"]))
                for c in last["tool_calls"]
            ]
            assert got == [(c.name, c.arguments) for c in label.calls]
        else:
            assert last["content"] == label.text and "tool_calls" not in last
        # every tool result answers an earlier call id; context assistant turns are weight 0
        ids = [c["id"] for m in msgs if m.get("tool_calls") for c in m["tool_calls"]]
        assert len(ids) == len(set(ids))
        assert all(m["tool_call_id"] in ids for m in msgs if m["role"] == "tool")
        assert all(m["weight"] == 0 for m in msgs[:-1] if m["role"] == "assistant")
    assert {"multi_step", "clarify", "parallel"} <= kinds


def test_openai_object_arguments(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "obj.jsonl"
    export_version("D1", "openai", out, root=project, arguments="object")
    rec = next(r for r in _jsonl(out) if r["messages"][-1].get("tool_calls"))
    assert isinstance(rec["messages"][-1]["tool_calls"][0]["function"]["arguments"], dict)


def test_sharegpt_records(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "d2.sharegpt.jsonl"
    export_version("D2", "sharegpt", out, root=project)
    for row, rec in zip(_rows(project, 2), _jsonl(out), strict=True):
        label = label_from_json(row["label"])
        turns = rec["conversations"]
        # LLaMA-Factory: human/observation on odd positions, gpt/function_call on even
        for i, t in enumerate(turns):
            assert t["from"] in (
                ("human", "observation") if i % 2 == 0 else ("gpt", "function_call")
            )
        last = turns[-1]
        if label.calls:
            val = json.loads(last["value"])
            calls = val if isinstance(val, list) else [val]
            assert [(c["name"], c["arguments"]) for c in calls] == [
                (c.name, c.arguments) for c in label.calls
            ]
        else:
            assert last == {"from": "gpt", "value": label.text}
        assert json.loads(rec["tools"])[0]["name"] == "get_weather"
        assert rec["system"].startswith("You are")


def test_parquet_export_keeps_rows_and_adds_completion(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "d3.parquet"
    export_version("D3", "parquet", out, root=project)
    got = pl.read_parquet(out)
    src = pl.read_parquet(project / "data/iter_3/dataset.parquet")
    assert got.select(src.columns).equals(src)
    for row in got.head(10).to_dicts():
        label = label_from_json(row["label"])
        assert row["completion"] == render_label(label)
        parsed = parse_completion(row["completion"])
        assert [c.to_json() for c in parsed.calls] == [c.to_json() for c in label.calls]
        assert json.loads(row["messages"])[0]["role"] == "system"


def test_errors_and_cli(project: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown format"):
        export_version("D1", "alpaca", tmp_path / "x", root=project)  # type: ignore[arg-type]
    bad = pl.read_parquet(project / "data/iter_1/dataset.parquet").head(3)
    bad = bad.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("{oops")).otherwise("label").alias("label")
    )
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ExportError, match=r"bad.parquet: row 1"):
        export_version(str(tmp_path / "bad.parquet"), "openai", tmp_path / "o.jsonl", root=project)
    assert not (tmp_path / "o.jsonl").exists()  # atomic: nothing half-written
    runner = CliRunner()
    out = tmp_path / "cli.jsonl"
    res = runner.invoke(
        main, ["export", "D1", "--format", "openai", "--out", str(out), "--root", str(project)]
    )
    assert res.exit_code == 0, res.output
    assert len(_jsonl(out)) == len(_rows(project, 1))
    args = ["export", "D8", "--format", "openai", "--out", str(out), "--root", str(project)]
    res = runner.invoke(main, [*args, "--force"])
    assert res.exit_code == 1 and "D8" in res.output
