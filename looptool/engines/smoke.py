"""Exercise generate / score / choose on any engine and report throughput.

Used by `looptool engines smoke` (and scripts/gpu_smoke.sh) on a GPU machine, and by
bench/engines.py on the tiny model. Requests are programmatic tool-use chats (the same
generator that trains the tiny tokenizer), so no data files are needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    Engine,
    EngineError,
    Failed,
    SamplingParams,
    ScoreRequest,
)
from looptool.engines.tiny_model import synthetic_chats

VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


@dataclass
class SmokeRow:
    kind: str
    requests: int
    seconds: float
    amount: float  # tokens (generate) or sequences / requests
    unit: str

    @property
    def rate(self) -> float:
        return self.amount / self.seconds if self.seconds > 0 else float("inf")


def smoke_requests(n: int, max_tokens: int, seed: int = 0):
    """(chat, score, choice) requests: contexts up to the first assistant turn, that turn
    as the scored completion, and a four-verdict choice over the same context."""
    chats, scores, choices = [], [], []
    for messages, tools in synthetic_chats(n, seed):
        k = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        ctx, target = messages[:k], messages[k]["content"]
        chats.append(
            ChatRequest(messages=ctx, tools=tools, params=SamplingParams(max_tokens=max_tokens))
        )
        scores.append(ScoreRequest(messages=ctx, completion=target, tools=tools))
        choices.append(ChoiceRequest(messages=ctx, options=VERDICTS, tools=tools))
    return chats, scores, choices


def _no_failures(kind: str, results: list) -> None:
    """The smoke requests are short: any per-request failure is an engine problem."""
    for i, r in enumerate(results):
        if isinstance(r, Failed):
            raise EngineError(f"smoke: {kind} request {i} failed: {r.reason}")


def run_smoke(
    engine: Engine, n: int = 32, max_tokens: int = 64, kinds=("generate", "score", "choose")
) -> list[SmokeRow]:
    """Time each request kind once over ``n`` requests; check every result's shape."""
    chats, scores, choices = smoke_requests(n, max_tokens)
    rows = []
    if "generate" in kinds:
        t = time.perf_counter()
        gens = engine.generate(chats)
        dt = time.perf_counter() - t
        _no_failures("generate", gens)
        if any(len(g) != 1 for g in gens):
            raise EngineError("smoke: generate returned the wrong number of samples")
        toks = sum(len(g[0].token_ids or []) for g in gens)
        rows.append(SmokeRow("generate (greedy)", n, dt, toks, "tok/s"))
    if "score" in kinds:
        t = time.perf_counter()
        res = engine.score(scores)
        dt = time.perf_counter() - t
        _no_failures("score", res)
        if any(s.n_tokens == 0 for s in res):
            raise EngineError("smoke: a non-empty completion scored zero tokens")
        rows.append(SmokeRow("score (teacher-forced)", n, dt, n, "seq/s"))
    if "choose" in kinds:
        t = time.perf_counter()
        picks = engine.choose(choices)
        dt = time.perf_counter() - t
        _no_failures("choose", picks)
        bad = [p for p in picks if p not in VERDICTS]
        if bad:
            raise EngineError(f"smoke: choose returned non-options {bad[:3]}")
        rows.append(SmokeRow("choose (4 options)", n, dt, n, "req/s"))
    return rows


def format_table(rows: list[SmokeRow], title: str = "") -> str:
    head = f"{'what':<26} {'requests':>8} {'seconds':>9} {'rate':>12}"
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.kind:<26} {r.requests:>8} {r.seconds:>9.3f} {r.rate:>8.1f} {r.unit}")
    return "\n".join(lines)
