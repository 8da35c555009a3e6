"""The verification tiers of an EDDE child after it parses: schema rules (the label, earlier
calls, a context that ends on the user's or a tool's turn), the held-out leak check
(same sample_id or a near-duplicate of a held-out sample) and the LLM check (VALID /
INVALID by the generator or judge role).
"""

from __future__ import annotations

import pyarrow as pa

from looptool.core.codec import render_label
from looptool.core.near_dup import ShingleIndex, rows_index
from looptool.core.render import render_conversation, render_tools
from looptool.core.rules import check_calls
from looptool.core.types import Sample
from looptool.engines.base import ChatRequest, ChoiceRequest, Engine, Failed, SamplingParams
from looptool.loop.expand.seeds import Child
from looptool.loop.judge.parse import strip_think
from looptool.loop.judge.vote import supports_choice
from looptool.prompts import load_prompt

VERIFY_OPTIONS = ("VALID", "INVALID")
VERIFY_TASK = "edde_verify"


def rule_violation(sample: Sample) -> str | None:
    """The first structural / schema problem of a child, or None."""
    if sample.context[-1].role not in ("user", "tool"):
        return f"context ends with a {sample.context[-1].role} turn"
    if not any(m.role == "user" for m in sample.context):
        return "context has no user turn"
    for i, m in enumerate(sample.context):
        vs = check_calls(m.tool_calls, sample.tools) if m.tool_calls else []
        if vs:
            return f"context[{i}] call: {vs[0].rule} {vs[0].name} {vs[0].param}".rstrip()
    vs = check_calls(sample.label.calls, sample.tools)
    if vs:
        return f"label: {vs[0].rule} {vs[0].name} {vs[0].param}".rstrip()
    return None


def verify_requests(
    children: list[Child], date: str, thinking: bool = False
) -> list[ChoiceRequest]:
    out = []
    for c in children:
        assert c.sample is not None
        s = c.sample
        user = (
            f"Current date: {date}\n\n## Functions\n{render_tools(s.tools)}\n\n## Conversation\n"
            f"{render_conversation(s.context)}\n\n## Reference next step\n{render_label(s.label)}"
        )
        out.append(
            ChoiceRequest(
                messages=[
                    {"role": "system", "content": load_prompt("edde_verify").strip()},
                    {"role": "user", "content": user},
                ],
                options=VERIFY_OPTIONS,
                chat_template_kwargs={"enable_thinking": thinking},
                task=VERIFY_TASK,
                payload={
                    "tools": s.tools_json(),
                    "context": s.context_json(),
                    "label": s.label.to_json(),
                },
            )
        )
    return out


def llm_verify(
    engine: Engine, children: list[Child], date: str, thinking: bool = False
) -> list[str | Failed]:
    """VALID / INVALID per child (constrained choice, else a strict one-word reading);
    a :class:`Failed` where the verifier's request failed."""
    reqs = verify_requests(children, date, thinking)
    if not reqs:
        return []
    if supports_choice(engine):
        return engine.choose(reqs)
    gens = engine.generate(
        [
            ChatRequest(
                messages=r.messages,
                params=SamplingParams(max_tokens=8),
                chat_template_kwargs=r.chat_template_kwargs,
                task=r.task,
                payload=r.payload,
            )
            for r in reqs
        ]
    )
    out: list[str | Failed] = []
    for g in gens:
        if isinstance(g, Failed):
            out.append(g)
            continue
        word = strip_think(g[0].text).strip()
        out.append(word if word in VERIFY_OPTIONS else f"UNPARSED:{word[:40]}")
    return out


def heldout_index(heldout: pa.Table | None, threshold: float) -> ShingleIndex | None:
    """A near-duplicate index over the held-out samples (None without a held-out table);
    ValueError naming the row when one does not rebuild into a sample."""
    if heldout is None:
        return None
    rows = heldout.select(["sample_id", "tools", "context", "label"]).to_pylist()
    return rows_index(rows, threshold, "held-out")


def heldout_duplicate(index: ShingleIndex | None, sid: str, sh: frozenset[str]) -> str | None:
    """Why a child leaks a held-out sample (same sample_id, or a near-duplicate), or None."""
    if index is None:
        return None
    if sid in index:
        return f"same sample_id as held-out sample {sid}"
    hit = index.most_similar(sh)
    if hit is None:
        return None
    return f"near-duplicate of held-out sample {hit[0]} (jaccard {hit[1]:.3f})"
