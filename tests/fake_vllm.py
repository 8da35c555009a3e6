"""A stand-in for the parts of vllm 0.31 that VLLMEngine touches (no GPU needed).

``install(monkeypatch, ...)`` puts fake ``vllm``, ``vllm.sampling_params`` and
``vllm.distributed.parallel_state`` modules in ``sys.modules`` and makes
``import_vllm`` return the fake. The fake LLM takes requests through ``enqueue`` and
finishes ``per_step`` of them per ``llm_engine.step()``, last submitted first (so
completion order differs from request order). Answers: generation text ``answer(ids)``,
one token per prompt token; prompt log-probs -0.5 per token; choice replies the first
option unless ``choice_reply`` says otherwise.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


class FakeParams:
    """vllm.SamplingParams / StructuredOutputsParams: keeps the keyword arguments."""

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        self.__dict__.update(kwargs)


class FakeEngineCore:
    def __init__(self) -> None:
        self.shut = False

    def shutdown(self) -> None:
        self.shut = True


class FakeLLMEngine:
    def __init__(self, llm: FakeLLM):
        self.llm = llm
        self.engine_core = FakeEngineCore()
        self.aborted: list[str] = []
        self.steps = 0

    def step(self) -> list[SimpleNamespace]:
        self.steps += 1
        if self.llm.fail_step:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        done = []
        for _ in range(min(self.llm.per_step, len(self.llm.queue))):
            done.append(self.llm.finish(self.llm.queue.pop()))
        if self.llm.on_step is not None:
            self.llm.on_step(done)
        return done

    def abort_request(self, ids: list[str], internal: bool = False) -> None:
        self.aborted += ids
        self.llm.queue = [q for q in self.llm.queue if q[0] not in ids]


class FakeLLM:
    instances: list[FakeLLM] = []

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        self.model_config = SimpleNamespace(max_model_len=kwargs.get("max_model_len") or 4096)
        self.llm_engine = FakeLLMEngine(self)
        self.queue: list[tuple[str, list[int], FakeParams]] = []
        self.counter = 0
        self.per_step = 2
        self.fail_step = False
        self.reject: Callable[[list[int]], bool] = lambda ids: False
        self.choice_reply: Callable[[list[int]], str | None] = lambda ids: None
        self.on_step: Callable[[list], None] | None = None
        self.enqueued: list[list[int]] = []
        FakeLLM.instances.append(self)

    def enqueue(self, prompts, params, use_tqdm=True) -> list[str]:
        assert len(prompts) == len(params) == 1
        ids = prompts[0]["prompt_token_ids"]
        if len(ids) > self.model_config.max_model_len or self.reject(ids):
            raise ValueError(f"The decoder prompt (length {len(ids)}) is not accepted")
        rid = str(self.counter)
        self.counter += 1
        self.enqueued.append(ids)
        self.queue.append((f"{rid}-abcdef12", ids, params[0]))
        return [f"{rid}-abcdef12"]

    def finish(self, item: tuple[str, list[int], FakeParams]) -> SimpleNamespace:
        rid, ids, p = item
        ext = rid.split("-", 1)[0]
        kw = p.kwargs
        if "structured_outputs" in kw:
            options = kw["structured_outputs"].kwargs["choice"]
            reply = self.choice_reply(ids)
            text = options[0] if reply is None else reply
            outs = [SimpleNamespace(index=0, text=text, token_ids=[1], logprobs=None,
                                    finish_reason="stop")]  # fmt: skip
        else:
            outs = [
                SimpleNamespace(
                    index=k,
                    text=f"answer {len(ids)} {k}",
                    token_ids=[7, 8],
                    logprobs=[
                        {7: SimpleNamespace(logprob=-0.25)},
                        {8: SimpleNamespace(logprob=-0.75)},
                    ]
                    if kw.get("logprobs")
                    else None,
                    finish_reason="length",
                )  # fmt: skip
                for k in range(kw.get("n") or 1)
            ]
        plp = None
        if kw.get("prompt_logprobs"):
            # option scoring: a prompt ending in token 1 is the likeliest
            plp = [None] + [{t: SimpleNamespace(logprob=-0.5 - (t != 1))} for t in ids[1:]]
        return SimpleNamespace(request_id=ext, finished=True, outputs=outs, prompt_logprobs=plp)


def install(monkeypatch) -> types.ModuleType:
    """Fake vllm modules in sys.modules; ``import_vllm`` returns the fake package."""
    FakeLLM.instances = []
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = FakeParams
    sp = types.ModuleType("vllm.sampling_params")
    sp.StructuredOutputsParams = FakeParams
    sp.SamplingParams = FakeParams
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = SimpleNamespace(is_cpu=lambda: False)  # a GPU build
    dist = types.ModuleType("vllm.distributed")
    ps = types.ModuleType("vllm.distributed.parallel_state")
    ps.cleanups = []
    ps.cleanup_dist_env_and_memory = lambda shutdown_ray=False: ps.cleanups.append(1)
    for name, mod in {
        "vllm": vllm,
        "vllm.sampling_params": sp,
        "vllm.platforms": platforms,
        "vllm.distributed": dist,
        "vllm.distributed.parallel_state": ps,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    import looptool.engines.backends.vllm as vb

    monkeypatch.setattr(vb, "import_vllm", lambda: vllm)
    monkeypatch.setattr(vb, "_open", [])
    return vllm
