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
    is_failed,
)
from looptool.engines.synthetic_chats import synthetic_chats

VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


@dataclass
class SmokeRow:
    kind: str
    requests: int
    seconds: float
    amount: float  # tokens (generate) or sequences / requests
    unit: str
    failed: int = 0  # requests answered with Failed(reason)
    note: str = ""  # why a kind did not run, or the first failure's reason

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
        ok, failed = _split_failed(gens)
        if any(len(g) != 1 for g in ok):
            raise EngineError("smoke: generate returned the wrong number of samples")
        if all(g[0].token_ids is not None for g in ok):
            row = SmokeRow(
                "generate (greedy)", n, dt, sum(len(g[0].token_ids) for g in ok), "tok/s"
            )
        else:  # the server does not return token ids (openai without return_token_ids)
            row = SmokeRow("generate (greedy)", n, dt, len(ok), "req/s")
        rows.append(_with_failures(row, failed))
    if "score" in kinds:
        # an openai endpoint without prompt log-probs cannot score: say so, do not fail
        can_score = getattr(engine, "capability", lambda name: True)("prompt_logprobs")
        if not can_score:
            rows.append(
                SmokeRow(
                    "score (teacher-forced)",
                    0,
                    0.0,
                    0,
                    "seq/s",
                    note="unavailable on this server (no prompt log-probs): "
                    "PPL needs vllm serve, or backend hf / vllm",
                )
            )
        else:
            t = time.perf_counter()
            ok, failed = _split_failed(engine.score(scores))
            dt = time.perf_counter() - t
            if any(s.n_tokens == 0 for s in ok):
                raise EngineError("smoke: a non-empty completion scored zero tokens")
            rows.append(
                _with_failures(SmokeRow("score (teacher-forced)", n, dt, len(ok), "seq/s"), failed)
            )
    if "choose" in kinds:
        t = time.perf_counter()
        picks, failed = _split_failed(engine.choose(choices))
        dt = time.perf_counter() - t
        bad = [p for p in picks if p not in VERDICTS]
        if bad:
            raise EngineError(f"smoke: choose returned non-options {bad[:3]}")
        rows.append(
            _with_failures(SmokeRow("choose (4 options)", n, dt, len(picks), "req/s"), failed)
        )
    return rows


def _split_failed(results: list) -> tuple[list, list[Failed]]:
    return [r for r in results if not is_failed(r)], [r for r in results if is_failed(r)]


def _with_failures(row: SmokeRow, failed: list[Failed]) -> SmokeRow:
    if failed:
        row.failed, row.note = len(failed), f"first failure: {failed[0].reason[:300]}"
    return row


def format_table(rows: list[SmokeRow], title: str = "") -> str:
    head = f"{'what':<26} {'requests':>8} {'failed':>6} {'seconds':>9} {'rate':>12}"
    lines = ([title] if title else []) + [head, "-" * len(head)]
    notes = []
    for r in rows:
        if not r.requests and r.note:
            lines.append(f"{r.kind:<26} {'-':>8} {'-':>6} {'-':>9} {'-':>12}")
        else:
            lines.append(
                f"{r.kind:<26} {r.requests:>8} {r.failed:>6} {r.seconds:>9.3f} "
                f"{r.rate:>8.1f} {r.unit}"
            )
        if r.note:
            notes.append(f"{r.kind.split()[0]}: {r.note}")
    return "\n".join(lines + notes)
