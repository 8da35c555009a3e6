"""Seed diversity metrics on hand-made samples and the held-out split by tool."""

from __future__ import annotations

import json

import pytest

from looptool.core.tables import sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec, canonical_json
from looptool.seed.diversity import masked_request, seed_diversity
from looptool.seed.samples import build_samples, heldout_by_tool


def _tool(name: str) -> ToolSpec:
    return ToolSpec.from_any(
        {
            "name": name,
            "description": f"{name} tool",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "order_id": {"type": "string"}},
            },
        }
    )


def _row(user: str, call: str, args: dict, dlg: str, earlier: list[Message] | None = None) -> dict:
    context = [Message(role="user", content=user), *(earlier or [])]
    sample = Sample(
        tools=[_tool(call), _tool("other")],
        context=context,
        label=Label(calls=[ToolCall(name=call, arguments=args)]),
    )
    return sample_to_row(sample, dialogue_id=dlg, step=len(context))


def test_near_duplicates_mask_values_and_need_the_same_function():
    train = [
        _row("Could you find a hotel in Lisbon for me?", "find_hotel", {"city": "Lisbon"}, "d1"),
        _row("What is the weather like in Oslo today?", "weather", {"city": "Oslo"}, "d2"),
    ]
    held = [
        # same wording, another value: a near duplicate
        _row("Could you find a hotel in Kyoto for me?", "find_hotel", {"city": "Kyoto"}, "d3"),
        # same wording, another function: not one
        _row("Could you find a hotel in Perth for me?", "weather", {"city": "Perth"}, "d4"),
        # same function, other wording: not one
        _row("Hotels in Lima, please, near the beach.", "find_hotel", {"city": "Lima"}, "d5"),
    ]
    assert masked_request(held[0]) == "Could you find a hotel in  v  for me?"
    d = seed_diversity(train, held, 0.9)
    assert d["heldout_call_samples"] == 3 and d["heldout_near_duplicates"] == 1
    assert d["near_duplicate_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert d["functions"] == {"offered": 3, "called": 2}
    assert d["tools_per_sample"] == 2.0
    um = d["user_messages"]
    assert (
        um["distinct"] == 5 and um["openings"] == 3
    )  # could you find / what is the / hotels in lima
    assert 0 < um["distinct_2"] < 1 and um["distinct_3"] > um["distinct_2"]


def test_chain_share_counts_values_taken_from_results_only():
    call = Message(role="assistant", tool_calls=[ToolCall(name="find", arguments={"city": "Oslo"})])
    result = Message(role="tool", name="find", content='{"order_id": "ORD-77"}')
    chained = _row("Find my order in Oslo and track it.", "track", {"order_id": "ORD-77"}, "d1",
                   [call, result])  # fmt: skip
    dictated = _row("Track ORD-77 after finding my Oslo order.", "track", {"order_id": "ORD-77"},
                    "d2", [call, result])  # fmt: skip
    d = seed_diversity([chained, dictated], [], 0.9)
    assert d["kind_share"] == {"multi_step": 1.0}
    assert d["multi_step_chained"] == 1 and d["chain_share"] == 0.5
    assert d["near_duplicate_share"] is None


def _dialogue(i: int, tools: list[str]) -> dict:
    msgs = [
        Message(role="user", content=f"please run {tools[0]} in Oslo {i}"),
        Message(role="assistant", tool_calls=[ToolCall(name=tools[0], arguments={"city": "Oslo"})]),
        Message(role="tool", name=tools[0], content="{}"),
        Message(role="assistant", content="done"),
    ]
    acts = [None, {"act": "call", "turn": 0, "step": 0, "expect": "call"}, None, None]
    return {
        "dialogue_id": f"d{i}",
        "index": i,
        "tools": canonical_json([_tool(t).to_json() for t in tools]),
        "messages": canonical_json([m.to_json() for m in msgs]),
        "acts": json.dumps(acts),
    }


def test_heldout_by_tool_never_offers_a_heldout_function_in_training():
    names = [f"t{k}" for k in range(8)]
    dialogues = [_dialogue(i, [names[i % 8], names[(i * 3 + 1) % 8]]) for i in range(40)]
    held = heldout_by_tool(dialogues, 0.25, seed=0)
    assert len(held) >= 10 and held == heldout_by_tool(dialogues, 0.25, seed=0)
    train, heldout, rejects, _ = build_samples(dialogues, 0.25, 0, set(), heldout_by="tool")
    offered = {t["name"] for r in train for t in json.loads(r["tools"])}
    called = {c["name"] for r in heldout for c in json.loads(r["label"])["calls"]}
    assert heldout and called and not called & offered
    # held-out dialogues whose call is to a function training offers: rejects with a reason
    split = [r for r in rejects if r["tier"] == "split"]
    assert len(train) + len(heldout) + len(split) == 40
    assert all("which training offers" in r["reason"] for r in split)
    assert seed_diversity(train, heldout, 0.9)["near_duplicate_share"] in (0.0, None)
    by_dialogue = build_samples(dialogues, 0.25, 0, set())
    assert len(by_dialogue[1]) == 10 and not by_dialogue[2]


def test_edde_rule_counts_whole_sample_copies_only():
    train = [
        _row(
            "Could you find a hotel in Lisbon for me, near the old town?",
            "find_hotel",
            {"city": "Lisbon"},
            "d1",
        ),  # fmt: skip
    ]
    held = [
        # the same sample in another dialogue: a copy under EDDE's rule (Jaccard 1.0)
        _row(
            "Could you find a hotel in Lisbon for me, near the old town?",
            "find_hotel",
            {"city": "Lisbon"},
            "d2",
        ),  # fmt: skip
        # same wording, another value: the masked-wording rule calls it a duplicate,
        # EDDE's whole-sample shingles (values count) do not at 0.9
        _row(
            "Could you find a hotel in Kyoto for me, near the old town?",
            "find_hotel",
            {"city": "Kyoto"},
            "d3",
        ),  # fmt: skip
    ]
    d = seed_diversity(train, held, 0.9)
    assert d["heldout_near_duplicates"] == 2 and d["near_duplicate_share"] == 1.0
    assert d["heldout_edde_near_duplicates"] == 1 and d["edde_near_duplicate_share"] == 0.5
    assert d["edde_threshold"] == 0.9
    # a lower threshold takes the second one in too
    assert seed_diversity(train, held, 0.5)["heldout_edde_near_duplicates"] == 2
