"""EDDE: template variants, parse / rules / dedup / LLM tiers, scenarios, ablation."""

from __future__ import annotations

import json
import random
import re

import polars as pl
import pytest

from looptool.core.codec import render_label
from looptool.core.near_dup import ShingleIndex, jaccard, shingles
from looptool.core.rules import check_calls
from looptool.core.tables import (
    DATASET,
    EXPANSIONS,
    PROBE,
    SAMPLES,
    VERDICTS,
    rows_to_table,
    sample_from_row,
    sample_kind,
    sample_to_row,
)
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, canonical_json
from looptool.engines import make_engine
from looptool.engines.base import Generation
from looptool.loop.expand.parse import parse_child
from looptool.loop.expand.run import run_expand
from looptool.loop.expand.seeds import error_seeds
from looptool.loop.expand.template import grounded
from looptool.params.engines import EngineSpec
from looptool.params.loop import DEFAULT_SCENARIOS, LoopParams

BOOK = ToolSpec.from_any(
    {
        "name": "book_table",
        "description": "Book a restaurant table.",
        "parameters": {
            "type": "object",
            "properties": {
                "restaurant": {"type": "string"},
                "people": {"type": "integer", "minimum": 1, "maximum": 12},
                "date": {"type": "string"},
                "seating": {"type": "string", "enum": ["indoor", "outdoor"]},
            },
            "required": ["restaurant", "people", "date"],
        },
    }
)
WEATHER = ToolSpec.from_any(
    {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
)


def book_sample(i: int) -> Sample:
    restaurant, people, date = (
        ["Luigi", "Casa Pepe", "Blue Fin"][i % 3],
        2 + i % 5,
        f"2026-05-{10 + i:02d}",
    )
    ctx = [
        Message(
            role="user",
            content=f"Please book {restaurant} for {people} people on {date}, outdoor seating.",
        )
    ]
    args = {"restaurant": restaurant, "people": people, "date": date, "seating": "outdoor"}
    return Sample(
        tools=[WEATHER, BOOK],
        context=ctx,
        label=Label(calls=[ToolCall(name="book_table", arguments=args)]),
    )


def iteration(
    samples: list[Sample], outcomes: list[str], new_labels: dict[int, Label] | None = None
):
    """D_j, probe and verdict tables where sample i has judge outcome outcomes[i]."""
    new_labels = new_labels or {}
    ds = rows_to_table(
        [{**sample_to_row(s), "split": "SEED", "iter": 1, "copy": 0} for s in samples], DATASET
    )
    pr, vd = [], []
    for i, (s, o) in enumerate(zip(samples, outcomes, strict=True)):
        wrong = Label(calls=[ToolCall(name="get_weather", arguments={"city": "Oslo"})])
        pr.append(
            {
                "sample_id": s.sample_id,
                "iter": 1,
                "kind": sample_kind(s),
                "raw_text": render_label(wrong),
                "match": False,
                "match_reason": "name_mismatch",
                "prediction": canonical_json(wrong.to_json()),
                "ppl": 2.0,
                "n_tokens": 3,
                "hppl": False,
            }
        )
        after = new_labels.get(i)
        vd.append(
            {
                "sample_id": s.sample_id,
                "iter": 1,
                "verdict": {"MR": "PRED_WRONG", "LR": "LABEL_WRONG"}.get(o, "BOTH_WRONG"),
                "tier": "llm",
                "reason": "r",
                "analysis": "called the wrong function",
                "label_before": canonical_json(s.label.to_json()),
                "label_after": canonical_json(after.to_json()) if after else None,
                "label_hash_after": after.hash if after else None,
                "kind_after": sample_kind(s.model_copy(update={"label": after})) if after else None,
                "outcome": o,
            }
        )
    return ds, rows_to_table(pr, PROBE), rows_to_table(vd, VERDICTS)


def expand(samples, outcomes, generator=None, new_labels=None, heldout=None, **expand_params):
    gen = generator or make_engine(EngineSpec(backend="template"), "generator")
    ds, pr, vd = iteration(samples, outcomes, new_labels)
    params = LoopParams(expand=expand_params)
    res = run_expand(
        gen,
        gen if generator is None else None,
        ds,
        pr,
        vd,
        iteration=1,
        date="2026-11-22",
        params=params,
        seed=0,
        heldout=heldout,
    )
    assert res.table.schema.equals(EXPANSIONS)
    return pl.from_arrow(res.table), res.metrics


def test_template_edde_makes_verified_structural_variants():
    seeds = [book_sample(i) for i in range(6)]
    fixed = {
        2: Label(
            calls=[
                ToolCall(
                    name="book_table", arguments={**seeds[2].label.calls[0].arguments, "people": 5}
                )
            ]
        )
    }
    df, m = expand(seeds, ["MR", "MR", "LR", "MR", "DROPPED", "MR"], new_labels=fixed)
    assert df.height == 5 * 4 and m["error_seeds"] == 5 and m["error_seeds_lr"] == 1
    assert set(df.get_column("parent_id")) == {s.sample_id for s in seeds if s is not seeds[4]}
    assert set(df.get_column("scenario")) <= set(DEFAULT_SCENARIOS)
    assert sorted(set(df.get_column("child_index"))) == [0, 1, 2, 3]
    acc = df.filter(pl.col("accepted"))
    assert acc.height >= 12 and m["accepted"] == acc.height
    assert (acc.get_column("origin") == "edde").all() and (acc.get_column("born_iter") == 1).all()
    assert df.filter(~pl.col("accepted")).get_column("reject_reason").is_not_null().all()
    parents = {s.sample_id: s for s in seeds}
    for row in acc.iter_rows(named=True):
        child, parent = sample_from_row(row), parents[row["parent_id"]]
        assert child.sample_id == row["sample_id"] != parent.sample_id
        assert not check_calls(child.label.calls, child.tools)  # schema-valid
        assert grounded(
            {
                "tools": child.tools_json(),
                "context": child.context_json(),
                "label": child.label.to_json(),
            }
        )
        assert (
            child.label.to_json() != parent.label.to_json() or row["scenario"] != "data_variation"
        )
    # scenario effects are visible
    doms = acc.filter(pl.col("scenario") == "domain_shift")
    if doms.height:
        assert "book_table" not in doms.get_column("label")[0]
    cplx = acc.filter(pl.col("scenario") == "complexity")
    if cplx.height:
        assert len(json.loads(cplx.get_column("context")[0])) == 3
    # deterministic
    again, _ = expand(seeds, ["MR", "MR", "LR", "MR", "DROPPED", "MR"], new_labels=fixed)
    assert again.equals(df)


def test_lr_seed_expands_the_corrected_label():
    s = book_sample(0)
    fixed = Label(
        calls=[
            ToolCall(
                name="book_table", arguments={**s.label.calls[0].arguments, "seating": "indoor"}
            )
        ]
    )
    ds, pr, vd = iteration([s], ["LR"], {0: fixed})
    (es,) = error_seeds(ds, pr, vd)
    assert es.sample.label == fixed and "outdoor" in es.wrong
    df, _ = expand([s], ["LR"], new_labels={0: fixed}, scenarios=["user_persona"])
    for lab in df.filter(pl.col("accepted")).get_column("label"):
        assert json.loads(lab)["calls"][0]["arguments"]["seating"] == "indoor"


def test_near_duplicates_of_the_seed_are_rejected():
    # Nothing in the label is stated verbatim, so a data_variation child can only shuffle the tools.
    s = Sample(
        tools=[WEATHER, BOOK],
        context=[Message(role="user", content="What's it like outside at home?")],
        label=Label(calls=[ToolCall(name="get_weather", arguments={"city": "Reykjavik"})]),
    )
    df, m = expand([s], ["MR"], scenarios=["data_variation"])
    assert not df.get_column("accepted").any()
    reasons = df.get_column("reject_reason").to_list()
    assert all(re.match(r"(near-duplicate of its seed|duplicate sample_id)", r) for r in reasons), (
        reasons
    )
    assert m["rejected_per_tier"] == {"dedup": 4}


class Scripted:
    """A generator answering every request with ``texts[child_index]``."""

    backend, model_id, batch_size = "scripted", "scripted", 8

    def __init__(self, texts):
        self.texts = texts

    def generate(self, requests):
        return [
            [Generation(text=self.texts[r.payload["child"] % len(self.texts)])] for r in requests
        ]


def _child_json(
    label_args: dict, content: str = "Book Luigi for 3 people on 2026-07-01.", **extra
) -> str:
    obj = {
        "tools": ["book_table"],
        "context": [{"role": "user", "content": content}],
        "label": {"calls": [{"name": "book_table", "arguments": label_args}]},
        **extra,
    }
    return "Here you go:\n```json\n" + json.dumps(obj) + "\n```"


def test_parse_rules_and_sibling_tiers():
    good = _child_json({"restaurant": "Luigi", "people": 3, "date": "2026-07-01"})
    texts = [
        good,
        good,  # identical sibling
        "I cannot help with that.",
        _child_json({"restaurant": "Luigi", "date": "2026-07-01"}),  # missing required arg
        _child_json(
            {"restaurant": "Luigi", "people": 3, "date": "2026-07-01"}, tools=["send_email"]
        ),
        json.dumps(
            {
                "context": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ],
                "label": {"calls": [], "text": "ok"},
            }
        ),  # ends on the assistant's turn
    ]
    df, m = expand([book_sample(1)], ["MR"], generator=Scripted(texts), k=6)
    r = {row["child_index"]: row for row in df.iter_rows(named=True)}
    assert r[0]["accepted"] and r[0]["reject_tier"] is None
    assert (r[1]["reject_tier"], r[1]["reject_reason"].split(" ")[0]) == ("dedup", "duplicate")
    assert r[2]["reject_tier"] == "parse" and "no JSON object" in r[2]["reject_reason"]
    assert r[2]["raw_text"] == "I cannot help with that." and r[2]["kind"] == "unparsed"
    assert r[3]["reject_tier"] == "rules" and "missing_required" in r[3]["reject_reason"]
    assert r[4]["reject_tier"] == "parse" and "send_email" in r[4]["reject_reason"]
    assert r[5]["reject_tier"] == "rules" and "assistant turn" in r[5]["reject_reason"]
    assert m["rejected_per_tier"] == {"dedup": 1, "parse": 2, "rules": 2}
    # ids hash (tools, context): siblings sharing a context share it; only one is accepted
    assert r[3]["sample_id"] == r[0]["sample_id"] and r[2]["sample_id"] not in {
        r[k]["sample_id"] for k in (0, 4, 5)
    }


ANNIVERSARY = (
    "Hello, my partner and I are planning a small anniversary dinner next month and we "
    "would love a quiet corner. Please book Luigi for 3 people on 2026-07-01, we will "
    "arrive around eight in the evening and may bring a small cake if that is allowed."
)
TEAM = (
    "Good morning, our team wants to celebrate the end of a long project with a relaxed "
    "lunch somewhere central. Could you reserve Luigi for 3 people on 2026-07-01 at noon, "
    "ideally near a window, and note that one of us is vegetarian?"
)


def test_children_leaking_the_heldout_split_are_rejected():
    args = {"restaurant": "Luigi", "people": 3, "date": "2026-07-01"}
    same = _child_json(args, content=ANNIVERSARY)
    near = _child_json(args, content=TEAM + " Thanks!")
    other = _child_json(
        {"restaurant": "Blue Fin", "people": 2, "date": "2026-08-15"},
        content="Table for two at Blue Fin on 2026-08-15, please.",
    )
    texts = [same, near, other]
    seed = book_sample(1)
    held_same = parse_child(same, seed.tools)
    held_near = parse_child(near.replace(" Thanks!", " Many thanks!"), seed.tools)
    child_near = parse_child(near, seed.tools)
    # The premise: a near-duplicate by the EDDE threshold, yet not the same sample.
    assert held_near.sample_id != child_near.sample_id
    assert jaccard(shingles(held_near), shingles(child_near)) >= 0.9
    heldout = rows_to_table([sample_to_row(held_same), sample_to_row(held_near)], SAMPLES)

    free, _ = expand([seed], ["MR"], generator=Scripted(texts), k=3)
    assert free.get_column("accepted").to_list() == [True, True, True]  # no held-out given

    df, m = expand([seed], ["MR"], generator=Scripted(texts), k=3, heldout=heldout)
    r = {row["child_index"]: row for row in df.iter_rows(named=True)}
    assert r[0]["reject_tier"] == "heldout_dup" and held_same.sample_id in r[0]["reject_reason"]
    assert r[0]["reject_reason"].startswith("same sample_id as held-out sample")
    assert r[1]["reject_tier"] == "heldout_dup" and held_near.sample_id in r[1]["reject_reason"]
    assert r[1]["reject_reason"].startswith("near-duplicate of held-out sample")
    assert r[2]["accepted"]
    assert m["rejected_per_tier"] == {"heldout_dup": 2}


def test_shingle_index_finds_exactly_the_pairs_at_or_above_the_threshold():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    base = [frozenset(rng.sample(vocab, rng.randint(1, 25))) for _ in range(60)]
    # Near copies of some sets so that high similarities occur.
    sets = base + [frozenset(set(b) ^ {rng.choice(vocab)}) for b in base[:30]]
    ids = [f"h{i}" for i in range(len(sets))]
    for t in (0.5, 0.8, 0.9, 1.0):
        index = ShingleIndex(ids, sets, t)
        for q in [*sets, *(frozenset(rng.sample(vocab, 12)) for _ in range(30))]:
            best = max((jaccard(q, s), -i) for i, s in enumerate(sets))
            want = (ids[-best[1]], best[0]) if best[0] >= t else None
            assert index.most_similar(q) == want
    assert "h3" in index and "x" not in index


def test_llm_tier_rejects_ungrounded_children():
    template = make_engine(EngineSpec(backend="template"), "generator")
    ungrounded = _child_json(
        {"restaurant": "Nobu", "people": 3, "date": "2026-07-01"},
        content="Book the sushi place for 3 people on 2026-07-01.",
    )
    ok = _child_json({"restaurant": "Luigi", "people": 3, "date": "2026-07-01"})
    ds, pr, vd = iteration([book_sample(1)], ["MR"])
    res = run_expand(
        Scripted([ok, ungrounded]),
        template,
        ds,
        pr,
        vd,
        iteration=1,
        date="d",
        params=LoopParams(expand={"k": 2}),
        seed=0,
    )
    df = pl.from_arrow(res.table).sort("child_index")
    assert df.get_column("accepted").to_list() == [True, False]
    assert (
        df.get_column("reject_tier")[1] == "llm" and "INVALID" in df.get_column("reject_reason")[1]
    )
    # llm_verify off: the same child passes
    res = run_expand(
        Scripted([ok, ungrounded]),
        None,
        ds,
        pr,
        vd,
        iteration=1,
        date="d",
        params=LoopParams(expand={"k": 2, "llm_verify": "off"}),
        seed=0,
    )
    assert pl.from_arrow(res.table).get_column("accepted").all()


@pytest.mark.parametrize("params", [{"ablation": "no_edde"}, {"expand": {"k": 0}}])
def test_no_edde_and_k0_make_no_children(params):
    ds, pr, vd = iteration([book_sample(0)], ["MR"])
    gen = make_engine(EngineSpec(backend="template"), "generator")
    res = run_expand(gen, gen, ds, pr, vd, iteration=1, date="d", params=LoopParams(**params))
    assert res.table.num_rows == 0 and "skipped" in res.metrics


def test_parse_child_accepts_names_specs_and_openai_calls():
    text = json.dumps(
        {
            "tools": [
                "get_weather",
                {
                    "type": "function",
                    "function": {
                        "name": "find_flight",
                        "parameters": {
                            "type": "object",
                            "properties": {"to": {"type": "string"}},
                            "required": ["to"],
                        },
                    },
                },
            ],
            "context": [
                {"role": "user", "content": "Weather in Rome, then a flight there"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        }
                    ],
                },
                {"role": "tool", "name": "get_weather", "content": {"temp": 20}},
            ],
            "label": {"calls": [{"name": "find_flight", "arguments": {"to": "Rome"}}]},
        }
    )
    s = parse_child("<think>plan</think>" + text, [WEATHER, BOOK])
    assert [t.name for t in s.tools] == ["get_weather", "find_flight"]
    assert (
        s.context[1].tool_calls[0].arguments == {"city": "Rome"}
        and s.context[2].content == '{"temp":20}'
    )
    with pytest.raises(ValueError, match="neither calls nor a text"):
        parse_child(
            json.dumps({"context": [{"role": "user", "content": "x"}], "label": {"calls": []}}),
            [WEATHER],
        )


def test_a_broken_heldout_row_is_a_clear_error():
    good = sample_to_row(book_sample(2))
    heldout = rows_to_table([good, {**good, "sample_id": "bad", "context": "[{oops"}], SAMPLES)
    with pytest.raises(ValueError, match=r"held-out row 1 \(bad\)"):
        expand([book_sample(1)], ["MR"], heldout=heldout)
