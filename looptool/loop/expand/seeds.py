"""Error seeds (ES = MR + LR, with the corrected label and the wrong step) and the
generator's requests: ``k`` children per seed, each with a scenario constraint drawn per
child (seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from looptool.core.codec import render_label
from looptool.core.render import render_conversation, render_tools
from looptool.core.tables import label_from_json, sample_from_row
from looptool.core.types import Sample, content_hash
from looptool.engines.base import ChatRequest, SamplingParams
from looptool.loop.probe import unique_samples
from looptool.params.loop import LoopParams
from looptool.prompts import load_prompt

SCENARIO_HINTS = {
    "complexity": "Make the situation more involved: more turns, more details, or several calls.",
    "user_persona": "Write the user as a different kind of person with their own background and goals.",
    "interaction_style": "Change how the user talks: terse, chatty, indirect or very formal.",
    "data_variation": "Keep the task but use different concrete values of the same kinds.",
    "domain_shift": "Move the same kind of task into a different domain or product.",
}
EDDE_TASK = "edde"


@dataclass
class ErrorSeed:
    sample_id: str
    row: dict  # the D_j row
    sample: Sample  # with the correct label (the prediction for LR seeds)
    wrong: str  # the wrong step as text
    analysis: str
    outcome: str  # MR | LR


@dataclass
class Child:
    parent: ErrorSeed
    index: int
    scenario: str
    raw: str = ""
    sample: Sample | None = None
    reject_tier: str | None = None
    reject_reason: str | None = None
    shingles: frozenset[str] = field(default_factory=frozenset)


def error_seeds(dataset: pa.Table, probe: pa.Table, verdicts: pa.Table) -> list[ErrorSeed]:
    """ES = MR + LR with the corrected label; the wrong step is the prediction (MR) or
    the replaced label (LR)."""
    ds = pl.from_arrow(unique_samples(dataset))
    vd = pl.from_arrow(verdicts).filter(pl.col("outcome").is_in(["MR", "LR"]))
    pr = pl.from_arrow(probe).select("sample_id", "raw_text", "prediction")
    assert (
        isinstance(ds, pl.DataFrame)
        and isinstance(vd, pl.DataFrame)
        and isinstance(pr, pl.DataFrame)
    )
    joined = (
        vd.select("sample_id", "outcome", "reason", "analysis", "label_after", "label_before")
        .join(ds, on="sample_id", how="inner", maintain_order="left")
        .join(pr, on="sample_id", how="left", maintain_order="left")
    )
    seeds = []
    for r in joined.iter_rows(named=True):
        sample = sample_from_row(r)
        if r["outcome"] == "LR" and r["label_after"] is None:
            raise ValueError(f"verdicts: LR row {r['sample_id']} has no label_after")
        if r["outcome"] == "LR":
            sample = Sample(
                tools=sample.tools, context=sample.context, label=label_from_json(r["label_after"])
            )
            wrong = render_label(label_from_json(r["label_before"]))
        elif r["prediction"] is not None:
            wrong = render_label(label_from_json(r["prediction"]))
        else:
            wrong = f"(unparseable output)\n{(r['raw_text'] or '')[:1500]}"
        seeds.append(
            ErrorSeed(r["sample_id"], r, sample, wrong, r["analysis"] or r["reason"], r["outcome"])
        )
    return seeds


def draw_scenario(scenarios: Sequence[str], seed: int, parent_id: str, index: int) -> str:
    h = int(
        content_hash({"seed": seed, "parent": parent_id, "child": index, "use": "scenario"}), 16
    )
    return scenarios[h % len(scenarios)]


def child_seed(seed: int, parent_id: str, index: int) -> int:
    return int(
        content_hash({"seed": seed, "parent": parent_id, "child": index, "use": "sampling"}), 16
    ) % (2**31)


def generation_request(
    es: ErrorSeed, scenario: str, index: int, date: str, params: LoopParams, seed: int
) -> ChatRequest:
    s = es.sample
    user = load_prompt("edde_user").format(
        date=date,
        tools=render_tools(s.tools),
        conversation=render_conversation(s.context),
        correct=render_label(s.label) or "(no call)",
        wrong=es.wrong,
        analysis=es.analysis,
        scenario=scenario,
        scenario_hint=SCENARIO_HINTS.get(scenario, f"Apply the constraint '{scenario}'."),
    )
    return ChatRequest(
        messages=[
            {"role": "system", "content": load_prompt("edde_system").strip()},
            {"role": "user", "content": user},
        ],
        params=SamplingParams(
            max_tokens=params.expand.max_tokens,
            temperature=params.expand.temperature,
            seed=child_seed(seed, es.sample_id, index),
        ),
        chat_template_kwargs={"enable_thinking": params.expand.thinking},
        task=EDDE_TASK,
        payload={
            "tools": s.tools_json(),
            "context": s.context_json(),
            "label": s.label.to_json(),
            "scenario": scenario,
            "child": index,
            "parent_id": es.sample_id,
        },
    )
