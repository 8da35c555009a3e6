"""The `template` backend: programmatic generators behind the engine protocol.

Not a language model. On the CPU default the generator role (API synthesis, templated
dialogues, structural EDDE variants) is served by plain Python functions, routed by
``request.task``::

    @register_task("api_schema")
    def api_schema(request: ChatRequest, rng: random.Random) -> str: ...

    @register_choice_task("verify_call")
    def verify(request: ChoiceRequest, rng: random.Random) -> str: ...  # one of options

A task reads its structured input from ``request.payload`` (LLM backends ignore it and
read ``messages``), so one call site can run on either kind of backend. Output is a
deterministic function of (params.seed, task, messages, tools, payload, sample index).
The modules defining tasks register them on import; import them before calling.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from looptool.core.types import canonical_json
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Generation,
    Score,
    ScoreRequest,
)

TaskFn = Callable[[ChatRequest, random.Random], str]
ChoiceFn = Callable[[ChoiceRequest, random.Random], str]
F = TypeVar("F", bound=Callable)

_TASKS: dict[str, TaskFn] = {}
_CHOICE_TASKS: dict[str, ChoiceFn] = {}


def _register(table: dict[str, Callable], kind: str, name: str) -> Callable[[F], F]:
    if not name or not isinstance(name, str):
        raise ValueError(f"{kind} name must be a non-empty string")

    def deco(fn: F) -> F:
        old = table.get(name)
        # Re-importing the defining module re-registers the same function: allowed.
        if old is not None and (old.__module__, old.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(
                f"{kind} {name!r} already registered by {old.__module__}.{old.__qualname__}"
            )
        table[name] = fn
        return fn

    return deco


def register_task(name: str) -> Callable[[F], F]:
    """Decorator: route generate() requests with ``task == name`` to ``fn(request, rng) -> str``."""
    return _register(_TASKS, "task", name)


def register_choice_task(name: str) -> Callable[[F], F]:
    """Decorator: route choose() requests with ``task == name`` to ``fn(request, rng) -> option``."""
    return _register(_CHOICE_TASKS, "choice task", name)


def registered_tasks() -> list[str]:
    return sorted(_TASKS)


def registered_choice_tasks() -> list[str]:
    return sorted(_CHOICE_TASKS)


def request_rng(seed: int, task: str, content: object, index: int = 0) -> random.Random:
    """An RNG seeded by (seed, task, request content, sample index): stable across runs,
    batch compositions and Python hash randomization."""
    blob = canonical_json({"seed": seed, "task": task, "content": content, "i": index})
    return random.Random(int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:8], "big"))


def _lookup(table: dict[str, Callable], kind: str, task: str | None, i: int) -> Callable:
    if task is None:
        raise EngineError(
            f"template backend: request {i} has no `task`; it serves only programmatic "
            f"{kind}s (registered: {sorted(table) or 'none'})"
        )
    fn = table.get(task)
    if fn is None:
        raise EngineError(
            f"template backend: unknown {kind} {task!r} in request {i}; registered: "
            f"{sorted(table) or 'none'} (import the module that registers it)"
        )
    return fn


class TemplateEngine:
    """Engine whose 'model' is the registry of programmatic tasks."""

    backend = "template"
    model_id = "template"

    def __init__(self, batch_size: int = 1024):
        self.batch_size = batch_size

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        out: list[list[Generation]] = []
        for i, req in enumerate(requests):
            fn = _lookup(_TASKS, "task", req.task, i)
            content = {"messages": req.messages, "tools": req.tools, "payload": req.payload}
            gens = []
            for k in range(req.params.n):
                text = fn(req, request_rng(req.params.seed, req.task, content, k))
                if not isinstance(text, str):
                    raise EngineError(
                        f"template task {req.task!r} returned {type(text).__name__}, expected str"
                    )
                gens.append(Generation(text=text, finish_reason="stop"))
            out.append(gens)
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        raise EngineError(
            "template backend cannot score: it is not a language model; "
            "use an hf, vllm or openai engine for perplexity"
        )

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        out: list[str] = []
        for i, req in enumerate(requests):
            fn = _lookup(_CHOICE_TASKS, "choice task", req.task, i)
            content = {
                "messages": req.messages,
                "tools": req.tools,
                "payload": req.payload,
                "options": list(req.options),
            }
            pick = fn(req, request_rng(0, req.task, content))
            if pick not in req.options:
                raise EngineError(
                    f"template choice task {req.task!r} returned {pick!r}, not one of {list(req.options)}"
                )
            out.append(pick)
        return out
