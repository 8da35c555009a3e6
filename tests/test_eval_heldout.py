"""eval@j: held-out strict accuracy, BFCL per category, the iteration curve, the stage."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import pytest
import yaml
from store_synth import build, make_sample

from looptool.core.codec import render_calls, render_label
from looptool.core.tables import SAMPLES, rows_to_table, sample_to_row
from looptool.core.types import ToolCall
from looptool.engines.base import ChatRequest, EngineError, Generation
from looptool.eval.bfcl.run import bfcl_metrics, evaluate_bfcl, select_entries
from looptool.eval.bfcl.single_turn import first_acceptable_output, load_bfcl
from looptool.eval.heldout import evaluate_heldout, heldout_metrics
from looptool.eval.iteration import extend_curve

REPO = Path(__file__).resolve().parents[1]


class FakePolicy:
    """An engine whose answer is a function of the request (or an exception to raise)."""

    backend, model_id, batch_size = "fake", "fake", 4

    def __init__(self, answer: Callable[[ChatRequest], str]):
        self.answer = answer
        self.calls = 0

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        self.calls += 1
        return [[Generation(text=self.answer(r))] for r in requests]

    def score(self, requests):  # pragma: no cover - eval never scores
        raise NotImplementedError

    def choose(self, requests):  # pragma: no cover
        raise NotImplementedError


def _user_text(req: ChatRequest) -> str:
    return next(m["content"] for m in req.messages if m["role"] == "user")


def test_heldout_accuracy_kinds_and_failures() -> None:
    samples = {f"h{i}": make_sample(f"h{i}", k) for i, k in enumerate(
        ["single", "parallel", "no_call", "multi_step", "single", "parallel", "no_call", "single"]
    )}  # fmt: skip
    rows = [sample_to_row(s) for s in samples.values()]
    rows.append({**rows[0], "sample_id": "broken", "label": "{not json"})
    table = rows_to_table(rows, SAMPLES)

    def answer(req: ChatRequest) -> str:
        tag = _user_text(req).rsplit(" ", 1)[1]
        i = int(tag[1:])
        if tag == "h5":
            raise EngineError("prompt too long")
        if i % 3 == 0:
            return "<tool_call>{oops</tool_call>"  # parse error
        if i == 4:
            return render_calls(
                [ToolCall(name="get_weather", arguments={"city": "elsewhere", "days": 1})]
            )
        return "<think>ok</think>" + render_label(samples[tag].label)

    engine = FakePolicy(answer)
    # 1 failed request of 8 is over the default 5%: allowed here, to see it counted
    items = evaluate_heldout(
        engine, table, iteration=2, date="2026-01-01", max_engine_failure_share=0.2
    )
    df = pl.from_arrow(items)
    assert df.height == len(rows)  # nothing dropped
    by_id = {r["item_id"]: r for r in df.to_dicts()}
    assert by_id["broken"]["reason"] == "bad_sample"
    ids = {tag: s.sample_id for tag, s in samples.items()}
    assert (
        by_id[ids["h5"]]["reason"] == "engine_error" and "too long" in by_id[ids["h5"]]["raw_text"]
    )
    assert by_id[ids["h0"]]["reason"] == "parse_error"
    assert by_id[ids["h4"]]["reason"] == "value_mismatch"
    expect_ok = {"h1", "h2", "h7"}  # i % 3 != 0, not h4 (wrong value), not h5 (engine error)
    assert {t for t, sid in ids.items() if by_id[sid]["ok"]} == expect_ok

    m = heldout_metrics(items)
    assert m["n"] == 8 and m["not_scored"] == 1 and m["engine_failed"] == 1
    assert m["accuracy"] == pytest.approx(3 / 8)
    assert m["parse_rate"] == pytest.approx(4 / 8)  # h0, h3, h6 parse errors; h5 engine error
    want_kind = (
        df.filter(pl.col("reason") != "bad_sample")
        .group_by("category")
        .agg(pl.col("ok").mean())
        .rows()
    )
    assert {k: v["accuracy"] for k, v in m["by_kind"].items()} == pytest.approx(dict(want_kind))
    # kind groups: h1, h7 right of 6 call-labelled; h2 right, h6 a parse error of 2 clarify
    assert m["by_kind_group"] == {
        "call": {"accuracy": pytest.approx(2 / 6), "n": 6},
        "clarify": {"accuracy": 0.5, "n": 2},
    }
    assert sum(m["reasons"].values()) == len(rows)
    # call-labelled: h0 h1 h3 h4 h5 h7 (6); a parseable call from h1, h4, h7
    assert m["n_call_labelled"] == 6 and m["tool_call_rate"] == pytest.approx(3 / 6)
    assert m["ci_low"] < 3 / 8 < m["ci_high"] and m["ci_method"] == "wilson95"


def _bfcl_dir(tmp: Path) -> Path:
    """A small BFCL dir: the first entries of three real categories from the vendored data."""
    src = REPO / "data" / "bfcl"
    if not (src / "BFCL_v4_simple_python.json").is_file():
        pytest.skip("vendored BFCL data (data/bfcl) not present")
    d = tmp / "bfcl"
    (d / "possible_answer").mkdir(parents=True)
    for cat, n in (("simple_python", 6), ("parallel", 3), ("irrelevance", 4)):
        name = f"BFCL_v4_{cat}.json"
        lines = (src / name).read_text().splitlines()[:n]
        (d / name).write_text("\n".join(lines) + "\n")
        if (src / "possible_answer" / name).is_file():
            ans = (src / "possible_answer" / name).read_text().splitlines()[:n]
            (d / "possible_answer" / name).write_text("\n".join(ans) + "\n")
    return d


def test_bfcl_subset_scoring(tmp_path: Path) -> None:
    d = _bfcl_dir(tmp_path)
    entries = load_bfcl(d)
    picked = select_entries(entries, per_category=3, seed=1)
    assert [e.id for e in picked] == [e.id for e in select_entries(entries, 3, 1)]  # stable
    assert {e.category for e in picked} == {"simple_python", "parallel", "irrelevance"}
    assert sum(e.category == "simple_python" for e in picked) == 3
    by_question = {json.dumps(e.question[0][-1]["content"]): e for e in entries.values()}
    wrong = sorted(e.id for e in picked if e.category == "simple_python")[0]

    def answer(req: ChatRequest) -> str:
        e = by_question[json.dumps(req.messages[-1]["content"])]
        if e.category == "irrelevance":
            return "None of the functions fit."
        calls = [
            ToolCall(name=n, arguments=a) for c in first_acceptable_output(e) for n, a in c.items()
        ]
        if e.id == wrong:
            calls = [ToolCall(name=calls[0].name, arguments={})]
        return render_calls(calls)

    cats = ["simple_python", "parallel", "irrelevance"]  # null would add multi-turn too
    items = evaluate_bfcl(
        FakePolicy(answer), d, iteration=1, date="2026-01-01", categories=cats,
        per_category=3, seed=1,
    )  # fmt: skip
    df = pl.from_arrow(items)
    assert sorted(df["item_id"]) == sorted(e.id for e in picked)
    assert df.filter(pl.col("item_id") == wrong)["ok"].to_list() == [False]
    m = bfcl_metrics(items)
    assert m["simple_python"] == {"accuracy": pytest.approx(2 / 3), "n": 3}
    assert m["parallel"]["accuracy"] == 1.0 and m["irrelevance"]["accuracy"] == 1.0
    assert m["overall"]["accuracy"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["overall"]["micro_accuracy"] == pytest.approx(8 / 9)
    with pytest.raises(ValueError, match="unknown"):
        evaluate_bfcl(FakePolicy(answer), d, iteration=1, date="x", categories=["simple"])


def test_curve_is_chained(tmp_path: Path) -> None:
    def metrics(j: int, acc: float) -> dict:
        return {"iter": j, "static_baseline": False, "heldout": {"accuracy": acc},
                "bfcl": {"simple_python": {"accuracy": acc / 2}, "overall": {"accuracy": acc / 3}}}  # fmt: skip

    c0 = extend_curve(None, metrics(0, 0.1))
    c0.write_csv(tmp_path / "c0.csv")
    c1 = extend_curve(tmp_path / "c0.csv", metrics(1, 0.4))
    c1.write_csv(tmp_path / "c1.csv")
    assert c1["iter"].to_list() == [0, 1]
    assert c1["heldout"].to_list() == pytest.approx([0.1, 0.4])
    assert c1["bfcl_overall"].to_list() == pytest.approx([0.1 / 3, 0.4 / 3])
    # a rerun of iteration 1 replaces its row instead of appending a second one
    again = extend_curve(tmp_path / "c1.csv", metrics(1, 0.5))
    assert again["iter"].to_list() == [0, 1] and again["heldout"][1] == 0.5


@pytest.mark.slow
def test_eval_stage_with_tiny_model(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> None:
    """stages.eval end to end on the tiny hf model: j = 0 then j = 1 (chained curve)."""
    monkeypatch.syspath_prepend(str(REPO))  # stages/ is a top-level package of the repo
    from stages.eval import main

    build(tmp_path, n_seed=10, n_heldout=6, d1_size=4, iters=1)
    for j in (0, 1):
        shutil.copytree(tiny_model_dir, tmp_path / f"data/iter_{j}/model")
    params = {
        "engines": {"policy": {"backend": "hf", "model": "data/iter_0/model", "batch_size": 8},
                    "use_cache": True},
        "eval": {"max_tokens": 16, "bfcl_dir": str(_bfcl_dir(tmp_path)),
                 "bfcl_categories": ["simple_python", "irrelevance"], "bfcl_per_category": 2},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    main(["--j", "0"])
    main(["--j", "1", "--prev", "0", "--next", "2"])
    out = tmp_path / "data/iter_1"
    metrics = json.loads((out / "eval.json").read_text())
    items = pl.read_parquet(out / "eval_items.parquet")
    held = items.filter(pl.col("suite") == "heldout")
    assert held.height == 6 and metrics["heldout"]["n"] == 6
    assert metrics["heldout"]["accuracy"] == pytest.approx(held["ok"].mean())
    per_category = {k for k in metrics["bfcl"] if not k.startswith(("v3_", "v4_"))}
    assert per_category == {"simple_python", "irrelevance", "overall"}
    assert metrics["bfcl"]["v3_overall"]["accuracy"] is not None
    assert items.filter(pl.col("suite") == "bfcl").height == 4
    assert metrics["engine"]["cache_misses"] == 10
    main(["--j", "1"])  # a rerun (e.g. after a kill) is served from the request cache
    again = json.loads((out / "eval.json").read_text())
    assert again["engine"]["cache_hits"] == 10 and again["engine"]["cache_misses"] == 0
    assert again["heldout"] == metrics["heldout"] and again["bfcl"] == metrics["bfcl"]
    curve = pl.read_csv(out / "eval_curve.csv")
    assert curve["iter"].to_list() == [0, 1]
    assert curve["heldout"][1] == pytest.approx(metrics["heldout"]["accuracy"])


def test_mcnemar_exact_matches_hand_computed_values():
    from looptool.eval.interval import mcnemar_exact

    # b = 1, c = 9: P(X <= 1 | n = 10) = (1 + 10) / 1024; two-sided = 22 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    # b = 0, c = 6: 2 / 64 = 0.03125 (significant at 0.05); b = 0, c = 5: 2 / 32 = 0.0625
    assert mcnemar_exact(0, 6) == pytest.approx(0.03125)
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)
