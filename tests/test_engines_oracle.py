"""The oracle backend (the dry run's policy and judge): answers from the true labels with a
seeded error rate, deterministic, new errors per checkpoint; verdicts from the truth with
a seeded flip rate, the same for both response orders; through the real probe and judge."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from looptool.core.codec import parse_completion
from looptool.core.match import match_normalized, match_strict
from looptool.core.tables import DATASET, LABEL_NOISE, SAMPLES, rows_to_table, sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, canonical_json
from looptool.engines.backends.oracle import TEXTS, OracleEngine, prompt_id
from looptool.engines.base import ChatRequest, ChoiceRequest, EngineError, SamplingParams
from looptool.engines.factory import make_engine
from looptool.engines.policy_request import policy_request
from looptool.loop.judge.run import run_judge
from looptool.loop.judge.types import ORDERS
from looptool.loop.probe import run_probe
from looptool.params import Params, load_params
from looptool.params.engines import EngineSpec, OracleSpec
from looptool.params.loop import LoopParams, ProbeParams
from looptool.store.io import write_parquet_atomic

REPO = Path(__file__).resolve().parents[1]
DATE = "2026-11-22"
N, NOISY = 600, 40


def _tool(name: str, enum: list[str] | None = None) -> ToolSpec:
    unit = {"type": "string", **({"enum": enum} if enum else {})}
    return ToolSpec.from_any(
        {
            "name": name,
            "description": f"{name} of a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "unit": unit,
                },
                "required": ["city"],
            },
        }
    )


TOOLS = [_tool("get_weather"), _tool("get_forecast")]


def _sample(i: int) -> Sample:
    ctx = [Message(role="user", content=f"Weather in City{i} for {i % 5 + 1} days?")]
    if i % 10 == 9:  # a no-call (clarify) sample
        return Sample(
            tools=TOOLS, context=ctx, label=Label(text="Which city do you mean?", kind="clarify")
        )
    args = {"city": f"City{i}", "days": i % 5 + 1}
    return Sample(
        tools=TOOLS, context=ctx, label=Label(calls=[ToolCall(name="get_weather", arguments=args)])
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """N seed samples (NOISY with a noisy stored label and a label_noise row), D_1 of all."""
    root = tmp_path_factory.mktemp("oracle")
    samples = [_sample(i) for i in range(N)]
    rows, noise = [], []
    for i, s in enumerate(samples):
        stored = s
        if i < NOISY and s.label.calls:
            bad = Label(calls=[ToolCall(name="get_weather", arguments={"city": f"Town{i}"})])
            stored = Sample(tools=s.tools, context=s.context, label=bad)
            noise.append({"sample_id": s.sample_id, "noise_kind": "wrong_value", "schema_valid": True,
                          "clean_label": canonical_json(s.label.to_json()),
                          "noisy_label": canonical_json(bad.to_json()), "clean_label_hash": s.label.hash,
                          "noisy_label_hash": bad.hash})  # fmt: skip
        rows.append(sample_to_row(stored))
    write_parquet_atomic(root / "samples.parquet", rows_to_table(rows, SAMPLES))
    write_parquet_atomic(root / "label_noise.parquet", rows_to_table(noise, LABEL_NOISE))
    dataset = rows_to_table([{**r, "split": "SEED", "iter": 1, "copy": 0} for r in rows], DATASET)
    tables = [str(root / "label_noise.parquet"), str(root / "samples.parquet")]
    noisy = {r["sample_id"] for r in noise}
    return {"root": root, "dataset": dataset, "tables": tables, "noisy": noisy, "samples": samples}


def _oracle(world: dict, model: str = "data/iter_1/model", **kw) -> OracleEngine:
    spec = EngineSpec(
        backend="oracle", model=model, oracle=OracleSpec(tables=world["tables"], **kw)
    )
    engine = make_engine(spec, "policy")
    assert isinstance(engine, OracleEngine)
    return engine


def _within(k: int, n: int, p: float) -> bool:
    return abs(k - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 2


def test_request_hash_is_the_sample_id(world: dict) -> None:
    s = world["samples"][3]
    req = policy_request(s, DATE, SamplingParams())
    assert prompt_id(req.messages, req.tools) == s.sample_id


def test_policy_answers_the_truth_with_the_seeded_error_rate(world: dict) -> None:
    engine = _oracle(world, error_rate=0.25)
    probe = run_probe(engine, world["dataset"], iteration=1, date=DATE, params=ProbeParams())
    df = pl.from_arrow(probe)
    clean = df.filter(~pl.col("sample_id").is_in(list(world["noisy"])))
    wrong = int((~clean["match"]).sum())
    assert _within(wrong, clean.height, 0.25), wrong
    assert engine.counts["wrong"] >= wrong and engine.counts["answered"] == N
    noisy = df.filter(pl.col("sample_id").is_in(list(world["noisy"])))
    assert int((~noisy["match"]).sum()) >= len(world["noisy"]) - 2  # it answers the clean label
    assert df["ppl"].null_count() == 0 and int(df["hppl"].sum()) > 0
    kinds = {k for k in engine.counts if k.startswith("wrong_")}
    assert kinds == {"wrong_wrong_tool", "wrong_wrong_argument", "wrong_text", "wrong_surface"}
    again = run_probe(_oracle(world, error_rate=0.25), world["dataset"], iteration=1, date=DATE,
                      params=ProbeParams())  # fmt: skip
    assert again.equals(probe)  # deterministic
    other = pl.from_arrow(run_probe(_oracle(world, "data/iter_2/model", error_rate=0.25),
                                    world["dataset"], iteration=2, date=DATE, params=ProbeParams()))  # fmt: skip
    miss1 = set(df.filter(~pl.col("match"))["sample_id"])
    miss2 = set(other.filter(~pl.col("match"))["sample_id"])
    assert miss1 != miss2 and _within(len(miss2 - world["noisy"]), clean.height, 0.25)


@pytest.mark.parametrize("kind", ["wrong_tool", "wrong_argument", "text", "surface"])
def test_error_kinds(world: dict, kind: str) -> None:
    engine = _oracle(world, error_rate=1.0, error_kinds={kind: 1.0})
    s = world["samples"][100]  # a call sample with a clean label
    text = engine.generate([policy_request(s, DATE, SamplingParams())])[0][0].text
    pred = parse_completion(text).to_label()
    assert pred is not None and not match_strict(pred, s.label).ok
    gold = s.label.calls[0]
    if kind == "wrong_tool":
        assert pred.calls[0].name == "get_forecast" and pred.calls[0].arguments == gold.arguments
    elif kind == "wrong_argument":
        assert pred.calls[0].name == gold.name and pred.calls[0].arguments != gold.arguments
    elif kind == "text":
        assert pred.is_no_call
    else:  # a surface variant: tier 0 of the judge calls it equivalent
        assert match_normalized(pred.calls, s.label.calls, s.tools).ok
    no_call = world["samples"][9]
    text = engine.generate([policy_request(no_call, DATE, SamplingParams())])[0][0].text
    assert not match_strict(parse_completion(text), no_call.label).ok


def test_unknown_prompts_and_requests_without_a_payload(world: dict) -> None:
    engine = _oracle(world)
    stranger = Sample(
        tools=TOOLS, context=[Message(role="user", content="hello?")], label=Label(text="hi")
    )
    text = engine.generate([policy_request(stranger, DATE, SamplingParams())])[0][0].text
    assert parse_completion(text).calls == [] and engine.counts["unknown_prompt"] == 1
    with pytest.raises(EngineError, match="without a task"):
        engine.choose(
            [ChoiceRequest(messages=[{"role": "user", "content": "?"}], options=("A", "B"))]
        )
    with pytest.raises(EngineError, match="payload"):
        engine.generate([ChatRequest(messages=[{"role": "user", "content": "?"}], task="judge")])


@pytest.mark.parametrize("extraction", ["choose", "parse"])
def test_judge_verdicts_follow_the_truth_and_the_flip_rate(world: dict, extraction: str) -> None:
    policy = _oracle(world, error_rate=0.3)
    probe = run_probe(policy, world["dataset"], iteration=1, date=DATE, params=ProbeParams())
    judge = _oracle(world, judge_error_rate=0.2)
    params = LoopParams.model_validate({"judge": {"order": "both", "extraction": extraction}})
    result = run_judge([judge], world["dataset"], probe, iteration=1, date=DATE, params=params)
    v = pl.from_arrow(result.table)
    assert v.height == int((~pl.from_arrow(probe)["match"]).sum())
    assert set(v["verdict"]) == {"PRED_WRONG", "LABEL_WRONG", "BOTH_CORRECT", "BOTH_WRONG"}
    llm = v.filter(pl.col("tier") == "llm")
    assert llm.height and set(llm["response_order"]) == {"both"}  # asked in both orders
    assert not llm["reason"].str.contains("orders disagree").any()  # one draw per sample
    votes, flipped = judge.counts["votes"], judge.counts["votes_flipped"]
    assert votes == 2 * llm.height and _within(flipped // 2, llm.height, 0.2)
    # a noisy label the oracle policy answered right is relabeled (unless the draw flipped it)
    lr = v.filter(pl.col("verdict") == "LABEL_WRONG")
    assert lr.filter(pl.col("sample_id").is_in(list(world["noisy"]))).height >= lr.height * 0.5


def test_judge_flip_is_drawn_per_question_not_per_sample(world: dict) -> None:
    """The same sample asked with another prediction (a later iteration) gets a fresh
    draw: keyed by the sample alone, a flipped sample stayed flipped in every iteration."""
    judge = _oracle(world, judge_error_rate=0.3)
    flips: list[tuple[bool, bool]] = []
    for s in world["samples"]:
        if not s.label.calls:
            continue
        label = s.label.to_json()
        preds = [Label(text=TEXTS["irrelevant"], kind="irrelevant"),
                 Label(calls=[ToolCall(name="get_forecast", arguments={"city": "X"})])]  # fmt: skip
        got = []
        for pred in preds:
            payload = {"sample_id": s.sample_id, "label": label, "prediction": pred.to_json()}
            verdicts = {judge.verdict({**payload, "order": o})[0] for o in ORDERS}
            assert len(verdicts) == 1  # both response orders agree
            got.append(verdicts.pop() != "PRED_WRONG")  # the truth: PRED_WRONG
        flips.append((got[0], got[1]))
    n = len(flips)
    assert _within(sum(a for a, _ in flips), n, 0.3) and _within(sum(b for _, b in flips), n, 0.3)
    both = sum(a and b for a, b in flips)
    assert _within(both, n, 0.3 * 0.3), both  # independent draws, not the same one


def test_params_refuse_an_oracle_without_tables_and_noop_without_the_oracle() -> None:
    with pytest.raises(ValidationError, match="oracle.tables"):
        EngineSpec(backend="oracle")
    raw = load_params(REPO / "params.yaml").model_dump()
    raw["train"]["algorithm"] = "noop"
    with pytest.raises(ValidationError, match="backend oracle"):
        Params.model_validate(raw)
