"""JGLV cascade: every verdict path, order debiasing, unparseable output, votes, resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import yaml

from looptool.core.codec import parse_completion, render_label
from looptool.core.match import match_normalized, match_strict
from looptool.core.tables import (
    DATASET,
    EXPANSIONS,
    PROBE,
    SAMPLES,
    SEED_USED,
    VERDICTS,
    rows_to_table,
    sample_from_row,
    sample_kind,
    sample_to_row,
)
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, canonical_json
from looptool.engines.base import Generation
from looptool.loop.compose import compose_next
from looptool.loop.judge.metrics import label_correction_metrics
from looptool.loop.judge.parse import parse_judgement
from looptool.loop.judge.run import assign_both_correct, run_judge
from looptool.loop.probe import select_hppl
from looptool.params.loop import LoopParams
from looptool.store.io import write_parquet_atomic

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ToolSpec.from_any(
    {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["city"],
        },
    }
)
TRUTH = '"city": "Paris"'  # what the fake "truthful" judge considers correct


def call(**args) -> str:
    return render_label(Label(calls=[ToolCall(name="get_weather", arguments=args)]))


def sample(i: int, **label_args) -> Sample:
    ctx = [Message(role="user", content=f"How is the weather in Paris? ({i})")]
    return Sample(
        tools=[WEATHER],
        context=ctx,
        label=Label(calls=[ToolCall(name="get_weather", arguments=label_args)]),
    )


def tables(cases: list[tuple[Sample, str, float]], mastered: int = 4) -> tuple[pa.Table, pa.Table]:
    """D_j and a probe table: the given (sample, prediction text, ppl) cases plus
    ``mastered`` matched samples with PPL 1..mastered (HPPL cut = the top quarter)."""
    cases = list(cases) + [
        (sample(1000 + k, city="Paris"), call(city="Paris"), float(k + 1)) for k in range(mastered)
    ]
    ds, pr = [], []
    for s, pred, ppl in cases:
        ds.append({**sample_to_row(s), "split": "SEED", "iter": 1, "copy": 0})
        parsed = parse_completion(pred)
        lab = parsed.to_label()
        m = match_strict(parsed, s.label)
        pr.append(
            {
                "sample_id": s.sample_id,
                "iter": 1,
                "kind": sample_kind(s),
                "raw_text": pred,
                "think": None,
                "prediction": canonical_json(lab.to_json()) if lab else None,
                "parse_error": parsed.error.message if parsed.error else None,
                "match": m.ok,
                "match_reason": m.reason,
                "ppl": ppl,
                "n_tokens": 5,
                "hppl": False,
            }
        )
    probe = select_hppl(rows_to_table(pr, PROBE), LoopParams().probe)
    return rows_to_table(ds, DATASET), probe


def _candidates(req) -> tuple[str, str]:
    text = req.messages[1]["content"]
    a = text.split("## Candidate A", 1)[1].split("## Candidate B", 1)[0]
    b = text.split("## Candidate B", 1)[1]
    return a, b


class FakeJudge:
    """Scripted judge engine. ``mode``: truthful (a candidate is correct iff it asks for
    Paris), inverted, always_a, both, neither, garbage (free text, no verdict)."""

    def __init__(self, mode: str = "truthful", choice: bool = True, model_id: str = "fake-judge"):
        self.mode, self.supports_choice, self.model_id = mode, choice, model_id
        self.backend, self.batch_size = "fake", 4
        self.calls: list[tuple[str, object]] = []

    def option(self, req) -> str:
        a, b = _candidates(req)
        if self.mode in ("truthful", "inverted"):
            ok_a, ok_b = TRUTH in a, TRUTH in b
            if self.mode == "inverted":
                ok_a, ok_b = not ok_a, not ok_b
            return {
                (True, False): "ONLY_A",
                (False, True): "ONLY_B",
                (True, True): "BOTH_CORRECT",
            }.get((ok_a, ok_b), "BOTH_WRONG")
        return {"always_a": "ONLY_A", "both": "BOTH_CORRECT", "neither": "BOTH_WRONG"}[self.mode]

    def generate(self, requests):
        self.calls += [("generate", r) for r in requests]
        out = []
        for r in requests:
            if self.mode == "garbage":
                text = "Both look plausible to me, but A is probably better.\nVERDICT: A"
            elif "VERDICT:" in r.messages[1]["content"]:  # parse-mode instructions
                text = f"ANALYSIS: checked the city.\nCORRECT APPROACH: ask for Paris.\nVERDICT: {self.option(r)}"
            else:
                text = "ANALYSIS: checked the city.\nCORRECT APPROACH: ask for Paris."
            out.append([Generation(text=text)])
        return out

    def choose(self, requests):
        self.calls += [("choose", r) for r in requests]
        return [self.option(r) for r in requests]

    def score(self, requests):
        raise AssertionError("the judge never scores")


def judge(cases, engines, **judge_params) -> tuple[pl.DataFrame, dict]:
    ds, probe = tables(cases)
    params = LoopParams(judge=judge_params)
    res = run_judge(engines, ds, probe, iteration=1, date="2026-11-22", params=params, seed=0)
    assert res.table.schema.equals(VERDICTS)
    return pl.from_arrow(res.table), res.metrics


def by_id(df: pl.DataFrame) -> dict[str, dict]:
    return {r["sample_id"]: r for r in df.iter_rows(named=True)}


def test_tier0_equivalence_needs_no_llm():
    s = sample(1, city="Paris")
    eng = FakeJudge()
    df, m = judge([(s, call(city="  paris ", unit="celsius"), 3.0)], [eng])
    r = by_id(df)[s.sample_id]
    assert (r["verdict"], r["tier"]) == ("BOTH_CORRECT", "equiv")
    assert (
        eng.calls == [] and m["llm_calls_made"] == 0 and m["llm_calls_avoided"] == 1 * 2
    )  # analysis + choice


def test_tier1_rules_paths():
    bad_pred = sample(1, city="Paris")  # prediction misses a required arg
    unparsable = sample(2, city="Paris")
    bad_label = sample(3, city="Paris", unit="kelvin")  # label violates the enum
    both_bad = sample(4, city="Paris", unit="kelvin")
    empty = sample(5, city="Paris")
    cases = [
        (bad_pred, call(unit="celsius"), 2.0),
        (unparsable, "<tool_call>{not json</tool_call>", 2.0),
        (bad_label, call(city="Paris", unit="fahrenheit"), 2.0),
        (both_bad, call(town="Paris"), 2.0),
        (empty, "", 2.0),
    ]
    eng = FakeJudge()
    df, m = judge(cases, [eng], rules_label_wrong="accept")
    r = by_id(df)
    assert (
        r[bad_pred.sample_id]["verdict"],
        r[bad_pred.sample_id]["tier"],
        r[bad_pred.sample_id]["outcome"],
    ) == ("PRED_WRONG", "rules", "MR")
    assert "missing_required" in r[bad_pred.sample_id]["reason"]
    assert (
        r[unparsable.sample_id]["verdict"] == "PRED_WRONG"
        and "does not parse" in r[unparsable.sample_id]["reason"]
    )
    assert r[empty.sample_id]["verdict"] == "PRED_WRONG" and "empty" in r[empty.sample_id]["reason"]
    lw = r[bad_label.sample_id]
    assert (lw["verdict"], lw["tier"], lw["outcome"]) == ("LABEL_WRONG", "rules", "LR")
    assert json.loads(lw["label_after"])["calls"][0]["arguments"]["unit"] == "fahrenheit"
    assert json.loads(lw["label_before"])["calls"][0]["arguments"]["unit"] == "kelvin"
    assert lw["label_hash_after"] == Label.model_validate(json.loads(lw["label_after"])).hash
    assert (r[both_bad.sample_id]["verdict"], r[both_bad.sample_id]["outcome"]) == (
        "BOTH_WRONG",
        "DROPPED",
    )
    assert eng.calls == [] and m["resolved_by_tiers_0_1"] == 5
    assert m["verdicts_per_tier"]["rules"] == {"BOTH_WRONG": 1, "LABEL_WRONG": 1, "PRED_WRONG": 3}


def test_label_wrong_candidate_is_confirmed_by_the_llm():
    right = sample(1, city="Berlin", unit="kelvin")  # invalid label, prediction asks for Paris
    wrong = sample(2, city="Berlin", unit="kelvin")
    cases = [(right, call(city="Paris"), 2.0), (wrong, call(city="Rome"), 2.0)]
    df, _ = judge(cases, [FakeJudge()], rules_label_wrong="confirm", order="fixed")
    r = by_id(df)
    assert (r[right.sample_id]["verdict"], r[right.sample_id]["tier"]) == ("LABEL_WRONG", "llm")
    assert (r[wrong.sample_id]["verdict"], r[wrong.sample_id]["outcome"]) == (
        "BOTH_WRONG",
        "DROPPED",
    )
    assert "schema rules" in r[wrong.sample_id]["reason"]


def test_llm_verdict_paths_and_outcomes():
    pred_wrong = sample(1, city="Paris")
    label_wrong = sample(2, city="Lyon")
    both_hi = sample(3, city="Paris", unit="celsius")
    both_lo = sample(4, city="Paris", unit="celsius")
    neither = sample(5, city="Lyon")
    cases = [
        (pred_wrong, call(city="Lyon"), 9.0),
        (label_wrong, call(city="Paris"), 9.0),
        (both_hi, call(city="Paris", unit="fahrenheit"), 50.0),  # PPL above the HPPL cut
        (both_lo, call(city="Paris", unit="fahrenheit"), 0.5),
        (neither, call(city="Rome"), 9.0),
    ]
    # Script BOTH_CORRECT for the unit cases and BOTH_WRONG for Lyon/Rome via a custom judge.
    eng = FakeJudge()
    base = eng.option

    def option(req):
        a, b = _candidates(req)
        if '"unit"' in a and '"unit"' in b:
            return "BOTH_CORRECT"
        if "Rome" in a or "Rome" in b:
            return "BOTH_WRONG"
        return base(req)

    eng.option = option
    df, m = judge(cases, [eng], order="random", analysis_max_tokens=16)
    r = by_id(df)
    assert (r[pred_wrong.sample_id]["verdict"], r[pred_wrong.sample_id]["outcome"]) == (
        "PRED_WRONG",
        "MR",
    )
    lw = r[label_wrong.sample_id]
    assert (lw["verdict"], lw["outcome"], lw["tier"]) == ("LABEL_WRONG", "LR", "llm")
    assert json.loads(lw["label_after"])["calls"][0]["arguments"] == {"city": "Paris"}
    assert json.loads(lw["label_before"])["calls"][0]["arguments"] == {"city": "Lyon"}
    assert (r[both_hi.sample_id]["verdict"], r[both_hi.sample_id]["outcome"]) == (
        "BOTH_CORRECT",
        "HPPL",
    )
    assert (r[both_lo.sample_id]["verdict"], r[both_lo.sample_id]["outcome"]) == (
        "BOTH_CORRECT",
        "KEPT_OUT",
    )
    assert (r[neither.sample_id]["verdict"], r[neither.sample_id]["outcome"]) == (
        "BOTH_WRONG",
        "DROPPED",
    )
    # choose mode with analysis: one generate + one choose per item, analysis recorded
    kinds = [k for k, _ in eng.calls]
    assert kinds.count("generate") == kinds.count("choose") == 5 == m["llm_items"]
    assert m["llm_calls_made"] == 10
    assert lw["analysis"] == "checked the city." and lw["correct_approach"] == "ask for Paris."
    assert json.loads(lw["raw_judge"])[0]["option"] in ("ONLY_A", "ONLY_B")


def test_schema_rules_take_precedence_over_equivalence():
    wrong_case = sample(1, city="Paris", unit="celsius")
    bad_label = sample(2, city="Paris", unit="Celsius")  # the label breaks the enum's case
    surface = sample(3, city="Paris", unit="celsius")
    pred = {"city": "Paris", "unit": "Celsius"}
    # The premise: tier-0 normalization alone would call the wrong-case enum equivalent.
    assert match_normalized(
        [ToolCall(name="get_weather", arguments=pred)], wrong_case.label.calls, [WEATHER]
    ).ok
    cases = [
        (wrong_case, call(**pred), 2.0),
        (bad_label, call(city="Paris", unit="celsius"), 2.0),
        (surface, call(city=" PARIS ", unit="celsius"), 2.0),
    ]
    eng = FakeJudge()
    df, m = judge(cases, [eng], rules_label_wrong="accept")
    r = by_id(df)
    w = r[wrong_case.sample_id]
    assert (w["verdict"], w["tier"], w["outcome"]) == ("PRED_WRONG", "rules", "MR")
    assert "enum get_weather.unit" in w["reason"]  # an error seed, not a surface variant
    lw = r[bad_label.sample_id]
    assert (lw["verdict"], lw["tier"], lw["outcome"]) == ("LABEL_WRONG", "rules", "LR")
    assert (r[surface.sample_id]["verdict"], r[surface.sample_id]["tier"]) == (
        "BOTH_CORRECT",
        "equiv",
    )
    assert eng.calls == [] and m["resolved_by_tiers_0_1"] == 3
    # With the rules off, tier 0 still decides alone (as configured).
    df, _ = judge(cases[:1], [FakeJudge()], rules=False)
    assert (df.row(0, named=True)["verdict"], df.row(0, named=True)["tier"]) == (
        "BOTH_CORRECT",
        "equiv",
    )


def no_call_sample(i: int, text: str) -> Sample:
    ctx = [Message(role="user", content=f"Can you book me a flight to Rome? ({i})")]
    return Sample(tools=[WEATHER], context=ctx, label=Label(text=text))


def test_no_call_kinds_reach_the_judge_and_relabels_change_kind():
    refusal = no_call_sample(1, "I can only look up the weather.")  # irrelevant label
    empty = no_call_sample(2, "I can only look up the weather.")
    call_to_text = sample(3, city="Lyon")  # the label calls; asking back is right
    text_to_call = no_call_sample(4, "I cannot help with that.")  # a call is right
    cases = [
        (refusal, "Where would you like to fly?", 2.0),  # a clarification: another kind
        (empty, "", 2.0),
        (call_to_text, "Which city do you mean?", 2.0),
        (text_to_call, call(city="Paris"), 2.0),
    ]
    eng = FakeJudge()

    def option(req):
        good = ("only look up the weather", "Which city", TRUTH)
        ok_a, ok_b = (any(g in x for g in good) for x in _candidates(req))
        return {(True, False): "ONLY_A", (False, True): "ONLY_B"}[(ok_a, ok_b)]

    eng.option = option
    ds, probe = tables(cases)
    reasons = dict(pl.from_arrow(probe).select("sample_id", "match_reason").iter_rows())
    assert (reasons[refusal.sample_id], reasons[empty.sample_id]) == ("answer_kind", "empty_answer")
    params = LoopParams(judge={"order": "fixed", "analysis_max_tokens": 0})
    res = run_judge([eng], ds, probe, iteration=1, date="2026-11-22", params=params)
    r = by_id(pl.from_arrow(res.table))
    # A clarification against an irrelevance label is a real mismatch: the LLM decides.
    assert (r[refusal.sample_id]["tier"], r[refusal.sample_id]["verdict"]) == ("llm", "PRED_WRONG")
    assert (r[empty.sample_id]["tier"], r[empty.sample_id]["verdict"]) == ("rules", "PRED_WRONG")
    ct, tc = r[call_to_text.sample_id], r[text_to_call.sample_id]
    assert (ct["verdict"], ct["kind_after"]) == ("LABEL_WRONG", "clarify")
    assert (tc["verdict"], tc["kind_after"]) == ("LABEL_WRONG", "single")
    assert r[refusal.sample_id]["kind_after"] is None

    # compose carries the new kind into D_2 with the new label
    seeds = rows_to_table([sample_to_row(s) for s, _, _ in cases], SAMPLES)
    used = rows_to_table(
        [{"sample_id": x, "used_iter": 1} for x in ds.column("sample_id").to_pylist()], SEED_USED
    )
    out = compose_next(
        ds, probe, res.table, EXPANSIONS.empty_table(), seeds, used, next_j=2, params=params
    )
    d2 = {row["sample_id"]: row for row in out.dataset.to_pylist()}
    for sid, kind in ((call_to_text.sample_id, "clarify"), (text_to_call.sample_id, "single")):
        assert (d2[sid]["kind"], d2[sid]["origin"], d2[sid]["label_rev"]) == (kind, "relabel", 1)
        assert sample_kind(sample_from_row(d2[sid])) == kind
    assert d2[refusal.sample_id]["kind"] == "irrelevant"  # MR: label and kind kept


def test_both_correct_joins_hppl_by_the_cut_of_its_kind_group():
    """Mastered calls PPL 1..4, mastered refusals 50..80; BOTH_CORRECT mismatches: a call
    at PPL 5 and a refusal at PPL 60."""
    calls = [(f"c{i}", "single", float(i), True) for i in range(1, 5)]
    refusals = [(f"r{i}", "irrelevant", 40.0 + 10 * i, True) for i in range(1, 5)]
    both = [("bc_call", "parallel", 5.0, False), ("bc_refusal", "irrelevant", 60.0, False)]
    verdicts = rows_to_table(
        [
            {"sample_id": sid, "iter": 1, "verdict": "BOTH_CORRECT", "tier": "llm",
             "reason": "r", "label_before": "{}", "ppl": ppl, "outcome": "BOTH_CORRECT"}
            for sid, _, ppl, _ in both
        ],
        VERDICTS,
    )  # fmt: skip

    def outcomes(rows: list[tuple], groups: str = "by_kind") -> dict[str, str]:
        probe = rows_to_table(
            [
                {"sample_id": sid, "iter": 1, "kind": kind, "raw_text": "", "match": ok,
                 "match_reason": "x", "ppl": ppl, "n_tokens": 1, "hppl": False}
                for sid, kind, ppl, ok in rows
            ],
            PROBE,
        )  # fmt: skip
        params = LoopParams(probe={"hppl_quantile": 0.25, "hppl_groups": groups})
        table = assign_both_correct(verdicts, select_hppl(probe, params.probe), params)
        return dict(pl.from_arrow(table).select("sample_id", "outcome").iter_rows())

    rows = calls + refusals + both
    # pooled: the 2 HPPL slots go to the refusals (80, 70): the call never reaches the cut
    assert outcomes(rows, "pooled") == {"bc_call": "KEPT_OUT", "bc_refusal": "KEPT_OUT"}
    # by_kind: one slot per group; cuts 4 (calls) and 80 (refusals)
    assert outcomes(rows) == {"bc_call": "HPPL", "bc_refusal": "KEPT_OUT"}
    # calls_only: no-call samples never join HPPL
    assert outcomes(rows, "calls_only") == {"bc_call": "HPPL", "bc_refusal": "KEPT_OUT"}
    # a group without a mastered HPPL sample applies the rule to its BOTH_CORRECT ones
    assert outcomes(calls + both) == {"bc_call": "HPPL", "bc_refusal": "HPPL"}


def _orders(df: pl.DataFrame) -> dict[str, str]:
    return dict(df.select("sample_id", "response_order").iter_rows())


def test_position_debias_modes():
    cases = [(sample(i, city="Paris"), call(city=f"Lyon{i}"), 2.0) for i in range(24)]
    # fixed: label always first; a truthful judge gets every verdict right
    eng = FakeJudge()
    df, _ = judge(cases, [eng], order="fixed", analysis_max_tokens=0)
    assert set(df.get_column("response_order")) == {"label_first"}
    assert set(df.get_column("verdict")) == {"PRED_WRONG"} and len(eng.calls) == 24
    df, _ = judge(
        cases, [FakeJudge()], order="fixed", fixed_first="prediction", analysis_max_tokens=0
    )
    assert set(df.get_column("response_order")) == {"pred_first"}
    assert set(df.get_column("verdict")) == {"PRED_WRONG"}
    # random: seeded per sample, both orders occur, independent of the row order
    df1, _ = judge(cases, [FakeJudge()], order="random", analysis_max_tokens=0)
    df2, _ = judge(list(reversed(cases)), [FakeJudge()], order="random", analysis_max_tokens=0)
    assert _orders(df1) == _orders(df2)
    assert set(_orders(df1).values()) == {"label_first", "pred_first"}
    assert set(df1.get_column("verdict")) == {"PRED_WRONG"}
    # a position-biased judge ("A is always right") flips verdicts with the order
    df, _ = judge(cases, [FakeJudge("always_a")], order="random", analysis_max_tokens=0)
    flip = {
        sid: ("PRED_WRONG" if o == "label_first" else "LABEL_WRONG")
        for sid, o in _orders(df).items()
    }
    assert dict(df.select("sample_id", "verdict").iter_rows()) == flip
    # both: two requests per item; agreement -> the verdict, no disagreement recorded
    eng = FakeJudge()
    df, m = judge(cases, [eng], order="both", analysis_max_tokens=0)
    assert len(eng.calls) == 48 and set(df.get_column("response_order")) == {"both"}
    assert set(df.get_column("verdict")) == {"PRED_WRONG"} and m["order_disagreements"] == 0
    # both + biased judge: every item disagrees -> recorded tie-break rule
    for rule, expected in (
        ("keep_label", "PRED_WRONG"),
        ("drop", "BOTH_WRONG"),
        ("first", "PRED_WRONG"),
    ):
        df, m = judge(
            cases, [FakeJudge("always_a")], order="both", tie_break=rule, analysis_max_tokens=0
        )
        assert set(df.get_column("verdict")) == {expected}, rule
        assert m["order_disagreements"] == 24
        assert df.get_column("reason").str.contains(f"tie_break={rule}").all()
        assert df.get_column("reason").str.contains("PRED_WRONG|LABEL_WRONG", literal=True).all()


def test_unparseable_judge_output():
    cases = [(sample(i, city="Paris"), call(city="Lyon"), 2.0) for i in range(3)]
    eng = FakeJudge("garbage", choice=False)  # no constrained choice -> strict parser
    df, m = judge(cases, [eng], order="fixed")
    assert set(df.get_column("verdict")) == {"UNPARSED"} and m["unparsed"] == 3
    assert set(df.get_column("outcome")) == {"MR"}  # default: a model error, label kept
    raw = json.loads(df.get_column("raw_judge")[0])
    assert raw[0]["raw"].startswith("Both look plausible") and "unknown verdict" in raw[0]["error"]
    assert "unknown verdict" in df.get_column("reason")[0]
    df, _ = judge(
        cases, [FakeJudge("garbage", choice=False)], order="fixed", unparsed_outcome="DROPPED"
    )
    assert set(df.get_column("outcome")) == {"DROPPED"}
    # the same backend read by the strict parser gives real verdicts when the format is kept
    df, _ = judge(cases, [FakeJudge("truthful", choice=False)], order="fixed")
    assert set(df.get_column("verdict")) == {"PRED_WRONG"}
    assert df.get_column("analysis")[0] == "checked the city."


@pytest.mark.parametrize(
    "text,option,error",
    [
        ("ANALYSIS: x\nCORRECT APPROACH: y\nVERDICT: ONLY_B", "ONLY_B", None),
        ("VERDICT: BOTH_WRONG\n", "BOTH_WRONG", None),
        ("<think>VERDICT: ONLY_A</think>\nVERDICT: ONLY_B", "ONLY_B", None),
        ("<think>VERDICT: ONLY_A</think>", None, "no VERDICT line"),
        ("VERDICT: ONLY_A\nVERDICT: ONLY_A", None, "2 VERDICT lines"),
        ("VERDICT: only_a", None, "unknown verdict"),
        ("The verdict is ONLY_A", None, "no VERDICT line"),
        ("VERDICT: **ONLY_A**", None, "unknown verdict"),
    ],
)
def test_strict_verdict_parser(text, option, error):
    j = parse_judgement(text)
    assert j.option == option
    assert (j.error or "").startswith(error or "")


def test_majority_vote_of_several_judges():
    cases = [(sample(i, city="Paris"), call(city="Lyon"), 2.0) for i in range(4)]
    engines = [
        FakeJudge("truthful", model_id="j1"),
        FakeJudge("inverted", model_id="j2"),
        FakeJudge("truthful", model_id="j3"),
    ]
    df, m = judge(cases, engines, order="fixed", analysis_max_tokens=0)
    assert set(df.get_column("verdict")) == {"PRED_WRONG"}
    assert set(df.get_column("judge_model")) == {"j1,j2,j3"}
    assert df.get_column("reason").str.contains("models: votes").all()
    assert m["llm_calls_made"] == 12
    # two against two is a tie: keep_label prefers the verdict that keeps the label
    engines.append(FakeJudge("inverted", model_id="j4"))
    df, _ = judge(cases, engines, order="fixed", analysis_max_tokens=0)
    assert set(df.get_column("verdict")) == {"PRED_WRONG"}
    assert df.get_column("reason").str.contains("tie_break=keep_label").all()


def test_no_jglv_ablation_calls_no_judge():
    cases = [
        (sample(1, city="Paris"), call(city="Lyon"), 2.0),
        (sample(2, city="Lyon"), call(city="Paris"), 2.0),
    ]
    ds, probe = tables(cases)
    res = run_judge([], ds, probe, iteration=1, date="d", params=LoopParams(ablation="no_jglv"))
    df = pl.from_arrow(res.table)
    assert set(df.get_column("verdict")) == {"PRED_WRONG"} and set(df.get_column("tier")) == {
        "none"
    }
    assert set(df.get_column("outcome")) == {"MR"} and df.get_column("label_after").is_null().all()


def test_label_correction_precision_recall():
    noisy1, noisy2, clean = sample(1, city="Lyon"), sample(2, city="Lyon"), sample(3, city="Rome")
    cases = [
        (noisy1, call(city="Paris"), 2.0),
        (noisy2, call(city="Lyon"), 2.0),
        (clean, call(city="Paris"), 2.0),
    ]
    ds, probe = tables(cases)
    res = run_judge(
        [FakeJudge()], ds, probe, iteration=1, date="d", params=LoopParams(judge={"order": "fixed"})
    )
    paris = canonical_json(
        Label(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})]).to_json()
    )
    noise = pa.table(
        {
            "sample_id": [noisy1.sample_id, noisy2.sample_id],
            "noise_kind": ["wrong_value", "wrong_value"],
            "clean_label": [paris, paris],
            "noisy_label": [canonical_json(noisy1.label.to_json())] * 2,
        }
    )
    m = label_correction_metrics(res.table, ds, noise)
    # relabeled: noisy1 (correctly) and clean (wrongly: the truthful judge likes Paris)
    assert m["noisy_in_dataset"] == 2 and m["relabeled"] == 2 and m["relabeled_noisy"] == 1
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["precision_exact"] == 0.5
    assert m["noisy_judged"] == 1 and m["recall_judged"] == 1.0


# --- kill -9 half-way, rerun: same bytes, no repeated LLM call -------------------------


def _stage_dir(root: Path, tiny_model_dir: Path, n: int) -> Path:
    root.mkdir(parents=True)
    cases = [(sample(i, city="Paris"), call(city=f"Lyon {i}"), 2.0) for i in range(n)]
    ds, probe = tables(cases)
    write_parquet_atomic(root / "data/iter_1/dataset.parquet", ds)
    write_parquet_atomic(root / "data/iter_1/probe.parquet", probe)
    spec = {"backend": "hf", "model": str(tiny_model_dir), "batch_size": 1}
    params = {
        "project": {"seed": 0, "cache_dir": str(root / "cache")},
        "engines": {"policy": spec, "judge": spec},
        "loop": {"judge": {"order": "both", "analysis_max_tokens": 0}},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _run_judge(cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env.pop("LOOPTOOL_CACHE_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "stages.judge", "--j", "1", "--prev", "0", "--next", "2"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _entries(cache: Path) -> int:
    try:
        with sqlite3.connect(cache, timeout=1) as con:
            return con.execute("SELECT count(*) FROM requests").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_judge_sigkill_then_rerun_is_identical_without_repeats(tmp_path, tiny_model_dir):
    n = 40
    total = 2 * n  # order=both, choice only: two requests per item
    ref = _stage_dir(tmp_path / "ref", tiny_model_dir, n)
    run = _stage_dir(tmp_path / "run", tiny_model_dir, n)
    cache = run / "cache" / "requests.sqlite"

    ref_proc = _run_judge(ref)  # the uninterrupted reference, in parallel
    proc = _run_judge(run)
    deadline = time.time() + 120
    while _entries(cache) < total // 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _entries(cache)
    assert 0 < done < total, f"kill landed outside the run ({done}/{total} requests cached)"
    assert not (run / "data/iter_1/verdicts.parquet").exists()

    again = _run_judge(run)
    for p in (ref_proc, again):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]

    a = (ref / "data/iter_1/verdicts.parquet").read_bytes()
    b = (run / "data/iter_1/verdicts.parquet").read_bytes()
    assert a == b
    stats = json.loads((run / "data/iter_1/judge_metrics.json").read_text())["cache"][0]
    assert stats["cache_hits"] == done  # every finished request answered from the cache
    assert stats["backend_requests"] == total - done  # only the unfinished ones were sent
    assert (
        json.loads((ref / "data/iter_1/judge_metrics.json").read_text())["cache"][0][
            "backend_requests"
        ]
        == total
    )


def test_llm_label_wrong_on_an_unusable_prediction_never_relabels():
    """Rules off, the LLM says LABEL_WRONG, but the prediction does not parse (or is
    empty): no relabel (there is no label to put in), a BOTH_WRONG row with the reason,
    and compose runs with the sample's old label out of D_2."""
    broken = sample(1, city="Lyon")
    empty = no_call_sample(2, "I can only look up the weather.")
    cases = [
        (broken, call(city="Paris").replace("}}", "}"), 2.0),  # invalid JSON
        (empty, "   ", 2.0),
    ]
    eng = FakeJudge()
    eng.option = lambda req: "ONLY_B"  # order fixed, label first: the prediction is right
    ds, probe = tables(cases)
    params = LoopParams(judge={"rules": False, "order": "fixed", "analysis_max_tokens": 0})
    res = run_judge([eng], ds, probe, iteration=1, date="2026-11-22", params=params)
    r = by_id(pl.from_arrow(res.table))
    for s in (broken, empty):
        row = r[s.sample_id]
        assert (row["verdict"], row["tier"], row["outcome"]) == ("BOTH_WRONG", "llm", "DROPPED")
        assert "cannot relabel" in row["reason"]
        assert row["label_after"] is None and row["kind_after"] is None
    seeds = rows_to_table([sample_to_row(s) for s, _, _ in cases], SAMPLES)
    used = rows_to_table(
        [{"sample_id": x, "used_iter": 1} for x in ds.column("sample_id").to_pylist()], SEED_USED
    )
    out = compose_next(
        ds, probe, res.table, EXPANSIONS.empty_table(), seeds, used, next_j=2, params=params
    )
    d2 = out.dataset.to_pylist()
    assert not {broken.sample_id, empty.sample_id} & {row["sample_id"] for row in d2}
    assert all(row["label"] for row in d2)
