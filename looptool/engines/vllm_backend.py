"""The `vllm` backend: offline ``vllm.LLM`` on GPUs (the `gpu` extra; imported lazily).

Prompts are rendered and tokenized with the model's own chat template by
looptool.engines.chat_template (the same code the hf backend uses) and passed as token
ids, so hf and vllm see identical prompts and every request keeps its own tools,
template kwargs and sampling params in one ``LLM.generate`` call (``LLM.chat`` takes a
single tools list per call).

- generate: ``SamplingParams(temperature, top_p, max_tokens, n, stop, seed, logprobs=1)``;
  ``temperature == 0`` is greedy.
- score: prompt + completion token ids with ``prompt_logprobs=1`` and ``max_tokens=1``;
  the log-prob of each completion token is read from ``RequestOutput.prompt_logprobs``
  (one dict token_id -> Logprob per prompt position, entry 0 None).
- choose: greedy decoding constrained by ``StructuredOutputsParams(choice=options)``; a
  reply that is not exactly an option (e.g. cut by max_tokens) falls back to scoring
  each option + end-of-turn token, like the hf backend.
``batch_size`` only sets how many requests go into one ``LLM.generate`` call (and one
cache commit); vLLM schedules within it, so set it large (hundreds) on GPUs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Generation,
    SamplingParams,
    Score,
    ScoreRequest,
    best_option,
)
from looptool.engines.chat_template import encode_chat, encode_text, end_of_turn_id
from looptool.engines.factory import model_fingerprint
from looptool.params.engines import EngineSpec


def import_vllm() -> Any:
    """``import vllm`` with actionable errors when the extra or CUDA is missing."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(
            f"backend 'vllm' needs the gpu extra (pip install 'looptool[gpu]'): {exc}"
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise EngineError("backend 'vllm' needs a CUDA GPU; use backend 'hf' on CPU")
    return vllm


class VLLMEngine:
    """Engine over an offline ``vllm.LLM`` loaded from a local directory."""

    backend = "vllm"

    def __init__(
        self, model_dir: str | Path, spec: EngineSpec, tokenizer_dir: str | Path | None = None
    ):
        vllm = import_vllm()
        # vLLM resolves some files through huggingface_hub; a local dir needs no network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.batch_size = spec.batch_size
        tok_dir = Path(tokenizer_dir or model_dir)
        kwargs: dict[str, Any] = {
            "model": str(model_dir),
            "tokenizer": str(tok_dir),
            "tensor_parallel_size": spec.tensor_parallel_size,
            "gpu_memory_utilization": spec.gpu_memory_utilization,
            "enable_prefix_caching": spec.enable_prefix_caching,
            "enforce_eager": spec.enforce_eager,
            "seed": spec.seed,
            "dtype": spec.dtype,
        }
        if spec.max_model_len:
            kwargs["max_model_len"] = spec.max_model_len
        self.llm = vllm.LLM(**kwargs)
        self._sp = vllm.SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        self._so = StructuredOutputsParams
        from transformers import AutoTokenizer

        # Our own HF tokenizer renders prompts, so hf and vllm share one rendering path.
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        self.end_of_turn = end_of_turn_id(self.tokenizer)
        fp = model_fingerprint(model_dir)
        tok_part = f"+tok@{model_fingerprint(tok_dir)}" if tokenizer_dir else ""
        self.model_id = f"{spec.model}@{fp}{tok_part}:{spec.dtype}"

    def _sampling(self, p: SamplingParams) -> Any:
        return self._sp(
            n=p.n,
            temperature=p.temperature,
            top_p=p.top_p,
            max_tokens=p.max_tokens,
            stop=list(p.stop) or None,
            seed=None if p.greedy else p.seed,
            logprobs=1 if p.logprobs else None,
        )

    def _prompt(self, messages: list[dict], tools, kwargs) -> dict:
        return {"prompt_token_ids": encode_chat(self.tokenizer, messages, tools, kwargs)}

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        prompts = [self._prompt(r.messages, r.tools, r.chat_template_kwargs) for r in requests]
        outs = self.llm.generate(
            prompts, [self._sampling(r.params) for r in requests], use_tqdm=True
        )
        result = []
        for req, out in zip(requests, outs, strict=True):
            gens = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                lps = None
                if req.params.logprobs and c.logprobs is not None:
                    lps = [
                        float(step[tid].logprob)
                        for step, tid in zip(c.logprobs, c.token_ids, strict=True)
                    ]
                gens.append(
                    Generation(
                        text=c.text,
                        token_ids=list(c.token_ids),
                        logprobs=lps,
                        finish_reason="length" if c.finish_reason == "length" else "stop",
                    )
                )
            result.append(gens)
        return result

    def score_ids(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Teacher-forced log-probs of each completion token (prompt_logprobs)."""
        todo = [k for k, (_, c) in enumerate(pairs) if c]
        out: list[list[float]] = [[] for _ in pairs]
        if not todo:
            return out
        sp = self._sp(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        res = self.llm.generate(
            [{"prompt_token_ids": pairs[k][0] + pairs[k][1]} for k in todo], sp, use_tqdm=True
        )
        for k, r in zip(todo, res, strict=True):
            p, c = pairs[k]
            plp = r.prompt_logprobs
            out[k] = [float(plp[len(p) + t][tid].logprob) for t, tid in enumerate(c)]
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        pairs = [
            (
                encode_chat(self.tokenizer, r.messages, r.tools, r.chat_template_kwargs),
                encode_text(self.tokenizer, r.completion),
            )
            for r in requests
        ]
        return [
            Score(token_logprobs=lp, token_ids=c)
            for lp, (_, c) in zip(self.score_ids(pairs), pairs, strict=True)
        ]

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        prompts = [self._prompt(r.messages, r.tools, r.chat_template_kwargs) for r in requests]
        params = []
        for r in requests:
            longest = max(len(encode_text(self.tokenizer, o)) for o in r.options)
            params.append(
                self._sp(
                    temperature=0.0,
                    max_tokens=longest + 4,
                    structured_outputs=self._so(choice=list(r.options)),
                )
            )
        outs = self.llm.generate(prompts, params, use_tqdm=True)
        picks: list[str | None] = []
        for r, out in zip(requests, outs, strict=True):
            text = out.outputs[0].text.strip()
            picks.append(text if text in r.options else None)
        fallback = [i for i, p in enumerate(picks) if p is None]
        if fallback:
            pairs, owners = [], []
            for i in fallback:
                r = requests[i]
                for k, opt in enumerate(r.options):
                    pairs.append(
                        (
                            prompts[i]["prompt_token_ids"],
                            encode_text(self.tokenizer, opt) + [self.end_of_turn],
                        )
                    )
                    owners.append((i, k))
            per_req: dict[int, list[list[float]]] = {}
            for (i, _k), lp in zip(owners, self.score_ids(pairs), strict=True):
                per_req.setdefault(i, []).append(lp)
            for i, ops in per_req.items():
                picks[i] = requests[i].options[best_option(ops, self.spec.choice_score)]
        return [p for p in picks if p is not None]
