"""Per-request Failed results: every stage that calls an engine records the failed item
with its reason (a reject row / per-item error), counts it, and never crashes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import test_eval_heldout as heldout_t
import test_expand as expand_t
import test_judge as judge_t
import test_probe as probe_t
import test_seed_dialogues as dialogues_t
import test_warmstart as warmstart_t
from store_synth import make_sample
from test_seed_dialogues import pool  # noqa: F401, F811  (fixture)

from looptool.core.codec import render_label
from looptool.core.tables import SAMPLES, rows_to_table, sample_to_row
from looptool.engines.base import Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED, failed_items, failure_note, first_text
from looptool.engines.policy_request import policy_request
from looptool.eval.heldout import evaluate_heldout, heldout_metrics
from looptool.loop.probe import probe_metrics, run_probe
from looptool.loop.warmstart import format_check
from looptool.params.loop import ProbeParams
from looptool.seed.agents import AgentSet, SimConfig, simulate
from looptool.seed.apis import build_pool, draw_apis
from looptool.seed.roles import AGENTS
from looptool.seed.trees import load_trees
from looptool.seed.verify import judge_steps

TOO_LONG = Failed("prompt of 9000 tokens exceeds the model length 8192")


class FailWhen:
    """Wraps an engine: requests for which ``fail(request)`` is true get ``Failed`` in
    place of their result (as a backend does for one over-long prompt); the rest go to
    the inner engine in one call. Records how many requests reached the inner engine."""

    def __init__(self, inner: Any, fail: Callable[[Any], bool]):
        self.inner, self.fail = inner, fail
        self.backend, self.model_id = inner.backend, inner.model_id
        self.batch_size = inner.batch_size
        self.supports_choice = getattr(inner, "supports_choice", True)
        self.passed = 0

    def _run(self, method: str, requests: list) -> list:
        ok = [r for r in requests if not self.fail(r)]
        self.passed += len(ok)
        answers = iter(getattr(self.inner, method)(ok) if ok else [])
        return [TOO_LONG if self.fail(r) else next(answers) for r in requests]

    def generate(self, requests):
        return self._run("generate", list(requests))

    def score(self, requests):
        return self._run("score", list(requests))

    def choose(self, requests):
        return self._run("choose", list(requests))


def test_helpers_name_the_item_and_reason():
    assert failure_note(TOO_LONG) == f"{ENGINE_FAILED}: {TOO_LONG.reason}"
    assert first_text(TOO_LONG) is None
    assert failed_items(["a", "b"], [[object()], TOO_LONG]) == [
        {"item": "b", "reason": failure_note(TOO_LONG)}
    ]


def test_probe_records_failed_generation_and_failed_scoring():
    s = [probe_t.sample(0), probe_t.sample(1), probe_t.sample(2)]
    inner = probe_t.FakePolicy({f"q{i}": (probe_t.call("Paris"), [-0.1, -0.2]) for i in range(3)})
    # q1's generation fails; q2's scoring pass (ppl from the label) fails
    eng = FailWhen(
        inner,
        lambda r: (
            r.messages[-1]["content"] == "q1"
            or (hasattr(r, "completion") and r.messages[-1]["content"] == "q2")
        ),
    )
    params = ProbeParams(ppl_source="label")
    table = run_probe(eng, probe_t.dataset(s), iteration=1, date=probe_t.DATE, params=params)
    rows = {r["sample_id"]: r for r in table.to_pylist()}
    ok, gen_failed, score_failed = (rows[x.sample_id] for x in s)
    assert ok["match"] and ok["engine_error"] is None and ok["ppl"] is not None
    assert not gen_failed["match"] and gen_failed["match_reason"] == ENGINE_FAILED
    assert gen_failed["engine_error"] == failure_note(TOO_LONG) and gen_failed["raw_text"] == ""
    assert not gen_failed["hppl"] and gen_failed["ppl"] is None
    assert score_failed["match"] and score_failed["ppl"] is None and not score_failed["hppl"]
    assert score_failed["engine_error"] == f"score {failure_note(TOO_LONG)}"
    m = probe_metrics(table)
    assert m["engine_failed"] == 2 and m["mismatch_reasons"] == {ENGINE_FAILED: 1}


def test_judge_drops_failed_probes_and_records_failed_votes():
    wrong = judge_t.sample(1, city="Paris")
    cases = [(wrong, judge_t.call(city="Lyon"), 3.0), (judge_t.sample(2, city="Paris"), "", 2.0)]
    ds, probe = judge_t.tables(cases)
    # the second mismatch's probe request had failed
    failed_id = cases[1][0].sample_id
    probe = pl.from_arrow(probe).with_columns(
        match_reason=pl.when(pl.col("sample_id") == failed_id)
        .then(pl.lit(ENGINE_FAILED))
        .otherwise(pl.col("match_reason")),
        engine_error=pl.when(pl.col("sample_id") == failed_id).then(pl.lit(failure_note(TOO_LONG))),
    )
    probe = probe.to_arrow().cast(judge_t.PROBE)
    fake = judge_t.FakeJudge("truthful")
    judge = FailWhen(fake, lambda r: True)  # every judge request fails
    params = judge_t.LoopParams(judge={"order": "both"})
    res = judge_t.run_judge([judge], ds, probe, iteration=1, date="2026-11-22", params=params)
    rows = {r["sample_id"]: r for r in res.table.to_pylist()}
    dropped = rows[failed_id]
    assert (dropped["verdict"], dropped["tier"], dropped["outcome"]) == (
        "UNPARSED",
        "engine",
        "DROPPED",
    )
    assert failure_note(TOO_LONG) in dropped["reason"]
    voted = rows[wrong.sample_id]
    assert voted["verdict"] == "UNPARSED" and voted["tier"] == "llm"
    assert f"label_first: {failure_note(TOO_LONG)}" in voted["reason"]
    assert res.metrics["probe_engine_failed"] == 1
    # analysis + choice per order: the analysis fails, so the choice is never asked
    assert res.metrics["judge_engine_failed"] == 2 and judge.passed == 0


def test_expand_rejects_children_whose_generator_or_verifier_request_failed():
    good = expand_t._child_json({"restaurant": "Luigi", "people": 3, "date": "2026-07-01"})
    other = expand_t._child_json(
        {"restaurant": "Luigi", "people": 4, "date": "2026-07-02"},
        content="Please book Luigi for 4 people on 2026-07-02, a table by the window.",
    )
    gen = FailWhen(expand_t.Scripted([good, other]), lambda r: r.payload["child"] == 1)
    df, m = expand_t.expand([expand_t.book_sample(1)], ["MR"], generator=gen, k=2)
    r = {row["child_index"]: row for row in df.iter_rows(named=True)}
    assert r[1]["reject_tier"] == ENGINE_FAILED and not r[1]["accepted"]
    assert r[1]["reject_reason"] == f"generator {failure_note(TOO_LONG)}"
    assert m["rejected_per_tier"][ENGINE_FAILED] == 1

    from looptool.engines import make_engine
    from looptool.params.engines import EngineSpec

    template = make_engine(EngineSpec(backend="template"), "generator")
    verifier = FailWhen(template, lambda r: True)
    ds, pr, vd = expand_t.iteration([expand_t.book_sample(1)], ["MR"])
    res = expand_t.run_expand(
        template,
        verifier,
        ds,
        pr,
        vd,
        iteration=1,
        date="2026-11-22",
        params=expand_t.LoopParams(expand={"k": 2}),
        seed=0,
    )
    rows = res.table.to_pylist()
    verified = [x for x in rows if x["reject_tier"] == ENGINE_FAILED]
    assert verified and all(
        x["reject_reason"] == f"verifier {failure_note(TOO_LONG)}" for x in verified
    )
    assert not any(x["accepted"] for x in rows)


def test_seed_api_draw_with_a_failed_request_is_a_reject_row():
    trees = load_trees("data/trees/context_tree.yaml", "data/trees/constraint_tree.yaml")
    draws = draw_apis(trees, 1, seed=0)
    rows, rejects = build_pool(draws, [TOO_LONG], trees)
    assert rows == [] and len(rejects) == 1
    assert rejects[0]["tier"] == ENGINE_FAILED
    assert rejects[0]["item_id"] == "draw-00000"
    assert rejects[0]["reason"] == failure_note(TOO_LONG)


def test_dialogue_whose_agent_request_fails_ends_as_a_reject(pool):  # noqa: F811
    specs = dialogues_t._specs(pool, n=6)
    base = dialogues_t._agents()
    seen: list[object] = []

    def fail(req) -> bool:  # the first request the user agent gets fails
        if not seen:
            seen.append(req)
        return req is seen[0]

    agents = AgentSet(
        {a: FailWhen(base.engines[a], fail) if a == "user" else base.engines[a] for a in AGENTS},
        SimConfig(tool_error_rate=0.1),
    )
    results = simulate(specs, agents)
    rejected = [r["reject"] for r in results if "reject" in r]
    assert seen and len(rejected) == 1
    tier, reason, _ = rejected[0]
    assert tier == ENGINE_FAILED and reason == f"user {failure_note(TOO_LONG)}"
    assert sum("messages" in r for r in results) == len(specs) - 1


def test_seed_verify_step_with_a_failed_request(pool):  # noqa: F811
    specs = dialogues_t._specs(pool, n=4)
    steps = dialogues_t._steps(specs, simulate(specs, dialogues_t._agents()))
    target = steps[0].payload
    engine = FailWhen(dialogues_t.TemplateEngine(), lambda r: r.payload == target)
    out = judge_steps(steps, engine, {s.dialogue_id: s.tools for s in specs}, False)
    assert out[0] == (ENGINE_FAILED, failure_note(TOO_LONG))
    assert all(v != ENGINE_FAILED for v, _ in out[1:])


def test_heldout_eval_records_the_failed_item():
    samples = [make_sample(f"h{i}", "single") for i in range(3)]
    table = rows_to_table([sample_to_row(s) for s in samples], SAMPLES)
    inner = heldout_t.FakePolicy(lambda r: "no call")
    eng = FailWhen(inner, lambda r: heldout_t._user_text(r).endswith("h1"))
    items = evaluate_heldout(
        eng, table, iteration=1, date="2026-11-22", max_engine_failure_share=0.5
    )
    rows = {r["item_id"]: r for r in items.to_pylist()}
    bad = rows[samples[1].sample_id]
    assert bad["reason"] == "engine_error" and bad["raw_text"] == failure_note(TOO_LONG)
    assert inner.calls == 1  # a Failed needs no per-request retry
    assert heldout_metrics(items)["reasons"]["engine_error"] == 1


def test_format_check_leaves_failed_samples_out_and_lists_them():
    samples = [s for s in warmstart_t.synthetic_samples(40, seed=5) if s.label.calls][:3]
    inner = warmstart_t.EchoEngine([render_label(samples[0].label), "I cannot help."])
    second = policy_request(samples[1], warmstart_t.DATE, SamplingParams(), False).messages
    eng = FailWhen(inner, lambda r: r.messages == second)
    out = format_check(eng, samples, date=warmstart_t.DATE, max_tokens=8)
    assert out["engine_failed"] == [
        {"item": samples[1].sample_id, "reason": failure_note(TOO_LONG)}
    ]
    assert out["n"] == 2 and out["tool_call_rate"] == 0.5 and out["match_rate"] == 0.5
