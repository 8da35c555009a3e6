"""GCP probe: greedy requests with the training prompt, match, PPL sources, HPPL selection."""

from __future__ import annotations

import math

import polars as pl
import pytest

from looptool.core.codec import render_label
from looptool.core.prompting import policy_messages, policy_tools
from looptool.core.tables import DATASET, PROBE, rows_to_table, sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec
from looptool.engines.base import Generation, Score
from looptool.loop.probe import hppl_threshold, probe_metrics, run_probe, select_hppl
from looptool.params.loop import ProbeParams

DATE = "2026-11-22"
WEATHER = ToolSpec.from_any(
    {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
)


def sample(i: int, city: str | None = "Paris") -> Sample:
    label = (
        Label(calls=[ToolCall(name="get_weather", arguments={"city": city})])
        if city
        else Label(text="Which city?")
    )
    return Sample(tools=[WEATHER], context=[Message(role="user", content=f"q{i}")], label=label)


def dataset(samples: list[Sample]):
    return rows_to_table(
        [{**sample_to_row(s), "split": "SEED", "iter": 1, "copy": 0} for s in samples], DATASET
    )


def call(city: str) -> str:
    return render_label(Label(calls=[ToolCall(name="get_weather", arguments={"city": city})]))


class FakePolicy:
    """Answers by the user message: ``script[q] = (text, logprobs)``; scores with -0.5/token."""

    backend, model_id, batch_size = "fake", "fake-policy", 8

    def __init__(self, script: dict[str, tuple[str, list[float] | None]]):
        self.script = script
        self.gen_requests, self.score_requests = [], []

    def generate(self, requests):
        self.gen_requests += requests
        out = []
        for r in requests:
            text, lps = self.script[r.messages[-1]["content"]]
            out.append([Generation(text=text, logprobs=lps if r.params.logprobs else None)])
        return out

    def score(self, requests):
        self.score_requests += requests
        return [Score(token_logprobs=[-0.5] * max(1, len(r.completion) // 10)) for r in requests]

    def choose(self, requests):
        raise AssertionError


def test_greedy_requests_match_and_ppl_from_generation():
    s = [sample(0), sample(1), sample(2, None), sample(3)]
    eng = FakePolicy(
        {
            "q0": (call("Paris"), [-0.1, -0.3]),
            "q1": (call("Lyon"), [-1.0, -2.0, -3.0]),
            "q2": ("Which city do you mean?", [-0.2]),
            "q3": ("<tool_call>{oops</tool_call>", [-0.7]),
        }
    )
    t = run_probe(eng, dataset(s + [s[0]]), iteration=1, date=DATE, params=ProbeParams())
    assert t.schema.equals(PROBE) and t.num_rows == 4  # the repeated row is probed once
    req = eng.gen_requests[0]
    assert req.params.temperature == 0.0 and req.params.greedy and req.params.n == 1
    assert req.chat_template_kwargs == {"enable_thinking": False}
    assert req.messages == policy_messages(s[0], DATE) and req.tools == policy_tools(s[0])
    rows = {r["sample_id"]: r for r in t.to_pylist()}
    r0, r1, r2, r3 = (rows[x.sample_id] for x in s)
    assert (
        r0["match"] and r0["match_reason"] == "match" and r0["ppl"] == pytest.approx(math.exp(0.2))
    )
    assert not r1["match"] and r1["match_reason"] == "value_mismatch" and r1["n_tokens"] == 3
    assert r1["ppl"] == pytest.approx(math.exp(2.0))
    assert r2["match"]  # a no-call answer to a no-call label
    assert [r["kind"] for r in (r0, r1, r2)] == ["single", "single", "clarify"]  # label kinds
    assert (
        not r3["match"]
        and r3["prediction"] is None
        and r3["parse_error"].startswith("invalid_json")
    )
    assert eng.score_requests == []  # the generation's log-probs were enough
    m = probe_metrics(t)
    assert m["mastered"] == 2 and m["mastery_rate"] == 0.5 and m["parse_failures"] == 1


def test_think_block_is_neither_matched_nor_scored():
    s = sample(0)
    think = '<think>maybe <tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call></think>\n'
    eng = FakePolicy({"q0": (think + call("Paris"), [-5.0] * 40)})
    t = run_probe(eng, dataset([s]), iteration=1, date=DATE, params=ProbeParams(thinking=True))
    row = t.to_pylist()[0]
    assert row["match"] and "Rome" in row["think"]
    assert eng.gen_requests[0].chat_template_kwargs == {"enable_thinking": True}
    (sr,) = eng.score_requests  # PPL from a teacher-forced pass over the answer only
    assert sr.completion == call("Paris") and sr.messages == policy_messages(s, DATE)
    assert row["ppl"] == pytest.approx(math.exp(0.5))


def test_ppl_over_the_label_or_always_scored():
    s = sample(0)
    eng = FakePolicy({"q0": (call("Lyon"), [-0.1])})
    t = run_probe(eng, dataset([s]), iteration=1, date=DATE, params=ProbeParams(ppl_source="label"))
    assert eng.gen_requests[0].params.logprobs is False
    assert [r.completion for r in eng.score_requests] == [render_label(s.label)]
    assert t.to_pylist()[0]["n_tokens"] == len(render_label(s.label)) // 10
    eng = FakePolicy({"q0": (call("Lyon"), [-0.1])})
    run_probe(eng, dataset([s]), iteration=1, date=DATE, params=ProbeParams(ppl_method="score"))
    assert [r.completion for r in eng.score_requests] == [call("Lyon")]


def _probe_table(ppls: list[float | None], matches: list[bool], kinds: list[str] | None = None):
    kinds = kinds or ["single"] * len(ppls)
    rows = [
        {
            "sample_id": f"s{i:02d}",
            "iter": 1,
            "kind": k,
            "raw_text": "",
            "match": m,
            "match_reason": "x",
            "ppl": p,
            "n_tokens": 1,
            "hppl": False,
        }
        for i, (p, m, k) in enumerate(zip(ppls, matches, kinds, strict=True))
    ]
    return rows_to_table(rows, PROBE)


def test_hppl_selection_quantile_and_count():
    ppls = [5.0, 1.0, 9.0, 9.0, 2.0, None, 7.0, 100.0, 3.0]
    matches = [True, True, True, True, True, True, True, False, True]
    t = _probe_table(ppls, matches)
    sel = lambda tab: sorted(pl.from_arrow(tab).filter(pl.col("hppl")).get_column("sample_id"))  # noqa: E731
    # 7 mastered with a PPL; the unmatched 100.0 and the null PPL never qualify
    assert sel(select_hppl(t, ProbeParams(hppl_mode="quantile", hppl_quantile=0.3))) == [
        "s02",
        "s03",
        "s06",
    ]
    assert sel(select_hppl(t, ProbeParams(hppl_mode="count", hppl_count=2))) == [
        "s02",
        "s03",
    ]  # tie kept by id
    assert sel(select_hppl(t, ProbeParams(hppl_mode="count", hppl_count=1))) == ["s02"]
    assert sel(select_hppl(t, ProbeParams(hppl_mode="count", hppl_count=50))) == [
        "s00",
        "s01",
        "s02",
        "s03",
        "s04",
        "s06",
        "s08",
    ]
    assert hppl_threshold(select_hppl(t, ProbeParams(hppl_mode="count", hppl_count=3))) == {
        "all": 7.0
    }
    assert hppl_threshold(select_hppl(t, ProbeParams(hppl_mode="count", hppl_count=0))) == {}


def _kinds_table():
    """24 mastered samples whose no-call PPLs dominate a pooled ranking: 12 calls (PPL
    1.1..2.2), 8 irrelevance replies (20..27), 4 clarifications (10..13); one call mismatch."""
    ppls = [1.0 + (i + 1) / 10 for i in range(12)]
    ppls += [20.0 + i for i in range(8)] + [10.0 + i for i in range(4)] + [99.0]
    kinds = ["single", "parallel", "multi_step"] * 4 + ["irrelevant"] * 8 + ["clarify"] * 4
    return _probe_table(ppls, [True] * 24 + [False], [*kinds, "single"])


def _selected_groups(t) -> dict[str, list[float]]:
    df = pl.from_arrow(t).filter(pl.col("hppl"))
    group = {"single": "call", "parallel": "call", "multi_step": "call"}
    out: dict[str, list[float]] = {}
    for kind, ppl in df.select("kind", "ppl").iter_rows():
        out.setdefault(group.get(kind, kind), []).append(ppl)
    return {g: sorted(v, reverse=True) for g, v in out.items()}


def test_hppl_groups_rank_ppl_within_each_kind_group():
    t = _kinds_table()
    quarter = ProbeParams(hppl_quantile=0.25)  # ceil(0.25 * 24) = 6 HPPL samples
    pooled = _selected_groups(select_hppl(t, quarter.model_copy(update={"hppl_groups": "pooled"})))
    assert pooled == {"irrelevant": [27.0, 26.0, 25.0, 24.0, 23.0, 22.0]}  # the collapse mode
    by_kind = _selected_groups(select_hppl(t, quarter))  # by_kind is the default
    # 6 slots in proportion 12 : 8 : 4, each group's own highest PPLs
    assert by_kind == {"call": [2.2, 2.1, 2.0], "irrelevant": [27.0, 26.0], "clarify": [13.0]}
    calls = select_hppl(t, quarter.model_copy(update={"hppl_groups": "calls_only"}))
    assert _selected_groups(calls) == {"call": [2.2, 2.1, 2.0]}  # ceil(0.25 * 12)
    # count mode splits the count the same way; the cut is per group
    by_count = select_hppl(t, ProbeParams(hppl_mode="count", hppl_count=12))
    assert {g: len(v) for g, v in _selected_groups(by_count).items()} == {
        "call": 6,
        "irrelevant": 4,
        "clarify": 2,
    }
    assert hppl_threshold(by_count, "by_kind") == {"call": 1.7, "irrelevant": 24.0, "clarify": 12.0}
    assert hppl_threshold(by_count) == {"all": 1.7}


def test_probe_metrics_per_kind_group():
    m = probe_metrics(select_hppl(_kinds_table(), ProbeParams(hppl_quantile=0.25)))
    assert (m["n"], m["mastered"], m["hppl"], m["hppl_threshold"]) == (25, 24, 6, 2.0)
    assert m["by_kind_group"] == {
        "call": {
            "n": 13,
            "mastered": 12,
            "mismatch": 1,
            "mastery_rate": 12 / 13,
            "hppl": 3,
            "hppl_threshold": 2.0,
        },
        "clarify": {
            "n": 4,
            "mastered": 4,
            "mismatch": 0,
            "mastery_rate": 1.0,
            "hppl": 1,
            "hppl_threshold": 13.0,
        },
        "irrelevant": {
            "n": 8,
            "mastered": 8,
            "mismatch": 0,
            "mastery_rate": 1.0,
            "hppl": 2,
            "hppl_threshold": 26.0,
        },
    }


def test_probe_with_tiny_model_is_greedy_and_cached(tiny_model_dir, tmp_path):
    from looptool.engines import RequestCache, make_engine
    from looptool.params.engines import EngineSpec

    s = [sample(i, "Paris" if i % 2 else None) for i in range(6)]
    spec = EngineSpec(backend="hf", model=str(tiny_model_dir), batch_size=4)
    params = ProbeParams(max_tokens=24)
    with RequestCache(tmp_path / "c.sqlite") as cache:
        eng = make_engine(spec, "policy", cache)
        a = run_probe(eng, dataset(s), iteration=1, date=DATE, params=params)
        first = eng.stats()
        b = run_probe(eng, dataset(s), iteration=1, date=DATE, params=params)
        assert a.equals(b)
        assert (
            first["backend_requests"] == 6 and eng.stats()["backend_requests"] == 6
        )  # rerun: all hits
    rows = a.to_pylist()
    assert all(r["n_tokens"] > 0 and r["ppl"] is not None and r["ppl"] >= 1.0 for r in rows)
    # teacher-forced scoring instead of the generation's log-probs: same predictions
    with RequestCache(tmp_path / "c.sqlite") as cache:
        c = run_probe(
            make_engine(spec, "policy", cache),
            dataset(s),
            iteration=1,
            date=DATE,
            params=ProbeParams(max_tokens=24, ppl_method="score"),
        )
    assert c.column("raw_text").equals(a.column("raw_text")) and c.column("match").equals(
        a.column("match")
    )
    assert all(r["ppl"] is None or r["ppl"] >= 1.0 for r in c.to_pylist())
