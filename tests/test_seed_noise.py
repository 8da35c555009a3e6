"""Label-noise kinds on hand-made samples."""

from __future__ import annotations

import random

import pytest

from looptool.core.rules import check_calls
from looptool.core.tables import sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec
from looptool.params.seed import NOISE_KINDS as PARAM_NOISE_KINDS
from looptool.params.seed import TURN_KINDS as PARAM_TURN_KINDS
from looptool.seed.noise import NOISE_KINDS, NoiseError, corrupt, inject_noise
from looptool.seed.plan import TURN_KINDS

TOOLS = [
    ToolSpec.from_any(
        {
            "name": "book",
            "description": "b",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "guests": {"type": "integer", "minimum": 1, "maximum": 6},
                    "room": {"type": "string", "enum": ["single", "double"]},
                },
                "required": ["city", "guests"],
            },
        }
    ),
    ToolSpec.from_any(
        {
            "name": "cancel",
            "description": "c",
            "parameters": {
                "type": "object",
                "properties": {"ref": {"type": "string"}},
                "required": ["ref"],
            },
        }
    ),
]
CALLS = [
    ToolCall(name="book", arguments={"city": "Lisbon", "guests": 2, "room": "double"}),
    ToolCall(name="cancel", arguments={"ref": "B-1"}),
]


def _sample(calls=CALLS, text=None) -> Sample:
    label = Label(calls=calls) if calls else Label(text=text)
    return Sample(tools=TOOLS, context=[Message(role="user", content="hi")], label=label)


def test_param_literals_mirror_the_library():
    assert PARAM_NOISE_KINDS == NOISE_KINDS and PARAM_TURN_KINDS == TURN_KINDS


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_each_kind_changes_the_label(kind):
    s = _sample()
    noisy = corrupt(s, kind, random.Random(1))
    assert noisy is not None and noisy.hash != s.label.hash


def test_schema_validity_per_kind():
    s = _sample()
    rng = random.Random(0)
    for _ in range(20):
        assert not check_calls(corrupt(s, "wrong_value", rng).calls, TOOLS)
        assert not check_calls(corrupt(s, "dropped_call", rng).calls, TOOLS)
        assert check_calls(corrupt(s, "type_error", rng).calls, TOOLS)
    single = _sample([CALLS[0]])
    assert corrupt(single, "dropped_call", rng) is None
    assert corrupt(_sample(None, "which city?"), "wrong_value", rng) is None


def test_injection_hits_the_fraction_and_keeps_clean_labels():
    rows = []
    for i in range(40):
        calls = [
            ToolCall(
                name="book", arguments={"city": f"C{i}", "guests": 1 + i % 5, "room": "single"}
            )
        ]
        s = Sample(
            tools=TOOLS,
            context=[Message(role="user", content=f"q{i}")],
            label=Label(calls=calls) if i % 4 else Label(text="ask"),
        )
        rows.append(sample_to_row(s, dialogue_id=f"d{i}", step=1))
    out, records = inject_noise(rows, 0.25, dict.fromkeys(NOISE_KINDS, 1.0), seed=0)
    assert len(records) == 10
    by_id = {r["sample_id"]: r for r in rows}
    for rec in records:
        assert rec["clean_label"] == by_id[rec["sample_id"]]["label"]
        assert rec["noisy_label"] != rec["clean_label"]
    changed = [o for o, r in zip(out, rows, strict=True) if o["label"] != r["label"]]
    assert len(changed) == 10 and all(
        o["label_hash"] != by_id[o["sample_id"]]["label_hash"] for o in changed
    )
    assert inject_noise(rows, 0.25, dict.fromkeys(NOISE_KINDS, 1.0), seed=0) == (out, records)
    with pytest.raises(NoiseError, match="needs 36 corruptible"):
        inject_noise(rows, 0.9, dict.fromkeys(NOISE_KINDS, 1.0), seed=0)
