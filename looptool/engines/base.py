"""The one engine protocol every model role (policy, judge, generator) is called through.

Three request kinds, each batched:
- ``generate``: chat generation (messages + optional tools rendered by the model's chat
  template), greedy when ``temperature == 0``; ``n`` generations per request.
- ``score``: teacher-forced per-token log-probs of a given assistant completion
  (perplexity for HPPL selection).
- ``choose``: constrained choice among fixed options; always returns one of them.

Messages use the OpenAI chat format: ``role``, ``content``, ``tool_calls``
(``[{"type": "function", "function": {"name": ..., "arguments": {...}}}]``, arguments a
dict) and ``name`` on tool-result messages. Tools use the OpenAI form
``{"type": "function", "function": {...}}``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class EngineError(RuntimeError):
    """A backend failure with a message a user can act on (bad path, endpoint down, ...)."""


@dataclass(frozen=True)
class SamplingParams:
    """Decoding knobs. ``temperature == 0`` means greedy; ``seed`` makes sampling repeatable."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if isinstance(self.stop, str) or isinstance(self.stop, list):
            # accept a bare string or list for convenience, store a tuple (hashable)
            object.__setattr__(
                self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class ChatRequest:
    """One chat generation request."""

    messages: list[dict]
    tools: list[dict] | None = None
    params: SamplingParams = SamplingParams()
    chat_template_kwargs: dict | None = None  # e.g. {"enable_thinking": False}
    task: str | None = None  # routes the request to a programmatic task (template backend)
    payload: dict | None = None  # structured input for the template backend; LLMs ignore it


@dataclass
class Generation:
    """One generated completion. ``logprobs`` are the sampled tokens' log-probs."""

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str = "stop"  # "stop" (EOS or stop string) | "length"


@dataclass(frozen=True)
class ScoreRequest:
    """Score ``completion`` as the assistant turn that follows ``messages``."""

    messages: list[dict]
    completion: str
    tools: list[dict] | None = None
    chat_template_kwargs: dict | None = None


@dataclass
class Score:
    """Per-token log-probs of a scored completion."""

    token_logprobs: list[float]
    token_ids: list[int] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def mean_logprob(self) -> float:
        """Mean log-prob; NaN for an empty completion (no tokens, nothing to average)."""
        if not self.token_logprobs:
            return math.nan
        return math.fsum(self.token_logprobs) / len(self.token_logprobs)

    @property
    def ppl(self) -> float:
        """Perplexity exp(-mean logprob): NaN for 0 tokens, inf on overflow."""
        mean = self.mean_logprob
        if math.isnan(mean):
            return math.nan
        try:
            return math.exp(-mean)
        except OverflowError:
            return math.inf


@dataclass(frozen=True)
class Failed:
    """What a backend returns in place of one request's result when that request alone
    cannot be answered (prompt longer than the model, a server's 4xx / deterministic 500 on
    it). The rest of the batch goes on; the cache never stores a failure (a rerun tries the
    request again); stages turn it into a reject row naming the item and ``reason``."""

    reason: str


# The one wording of "this prompt does not fit the model": a property of the item and the
# model's length limit, not of a failing engine (eval's failure budget does not charge it).
TOO_LONG = "tokens exceed the model length"


def too_long_failure(n: int, max_len: int, hint: str) -> Failed:
    """The :class:`Failed` for a request of ``n`` tokens over the model length."""
    return Failed(f"{n} {TOO_LONG} {max_len} ({hint})")


def is_too_long(reason: str | None) -> bool:
    """Whether a failure reason says the prompt does not fit the model."""
    return bool(reason) and TOO_LONG in str(reason)


def is_failed(result: object) -> bool:
    """Whether an engine result is a per-request :class:`Failed`."""
    return isinstance(result, Failed)


@dataclass(frozen=True)
class ChoiceRequest:
    """Pick one of ``options`` as the assistant's reply to ``messages``."""

    messages: list[dict]
    options: tuple[str, ...]
    tools: list[dict] | None = None
    chat_template_kwargs: dict | None = None
    task: str | None = None  # template backend only: routes to a programmatic chooser
    payload: dict | None = None

    def __post_init__(self) -> None:
        if isinstance(self.options, list):
            object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise ValueError("ChoiceRequest needs at least one option")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"ChoiceRequest options must be distinct: {self.options}")


@runtime_checkable
class Engine(Protocol):
    """What every backend (and the caching wrapper) implements."""

    backend: str  # "hf" | "vllm" | "openai" | "template" | "oracle"
    model_id: str  # identity used in cache keys: path + content fingerprint (or endpoint model)
    batch_size: int  # how many requests the backend takes per call (cache commits per batch)

    # Each method returns one result per request, in request order; a backend may put a
    # Failed in place of any one result instead of failing the whole call.
    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation] | Failed]:
        """``params.n`` generations per request, in request order."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score | Failed]: ...

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str | Failed]:
        """One of ``request.options`` per request."""
        ...


@runtime_checkable
class StreamingEngine(Protocol):
    """A backend that takes a whole stage's requests at once and hands back each result as
    it completes (vLLM continuous batching, concurrent HTTP, a Ray Data pipeline).

    :class:`~looptool.engines.cache.CachedEngine` uses ``stream`` when a backend has it and
    persists results while the rest are still running, so a killed stage loses at most one
    flush window of finished work. Backends without it are driven in ``batch_size`` chunks.
    """

    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index into requests, result)`` once per request, in completion order.
        ``kind`` is ``generate`` | ``score`` | ``choose``; a result is what the matching
        batch method returns for that one request."""
        ...


class StreamBatches:
    """``generate`` / ``score`` / ``choose`` for a backend whose one real method is
    ``stream`` (see :class:`StreamingEngine`): each collects the stream in request order,
    with a progress bar when the backend has ``progress`` on and more than one batch."""

    backend: str
    batch_size: int
    progress: bool = False

    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def _collect(self, kind: str, requests: Sequence[Any]) -> list[Any]:
        from tqdm.auto import tqdm

        out: list[Any] = [None] * len(requests)
        with tqdm(
            total=len(requests),
            desc=f"{self.backend} {kind}",
            unit="req",
            disable=not self.progress or len(requests) <= self.batch_size,
        ) as bar:
            for i, res in self.stream(kind, requests):
                out[i] = res
                bar.update(1)
        return out

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation] | Failed]:
        return self._collect("generate", requests)

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score | Failed]:
        return self._collect("score", requests)

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str | Failed]:
        return self._collect("choose", requests)


# The task of a judge request to a programmatic engine (loop/judge/vote.py sends it with
# a payload naming the sample, label, prediction and order; the oracle backend serves it).
JUDGE_TASK = "judge"


def reads_payload(engine: object) -> bool:
    """Whether ``engine`` is programmatic and reads ``task`` / ``payload`` (template, the
    dry-run oracle). Callers attach a payload only then: an LLM ignores it, and it would
    change the request's cache key for nothing."""
    flag = getattr(engine, "reads_payload", None)
    if isinstance(flag, bool):
        return flag
    return getattr(engine, "backend", None) in ("template", "oracle")


def request_to_json(request: ChatRequest | ScoreRequest | ChoiceRequest) -> dict[str, Any]:
    """Plain-JSON view of a request (all fields, nested params included) for hashing/logs."""
    out = dataclasses.asdict(request)
    if "options" in out:
        out["options"] = list(out["options"])
    if "params" in out:
        out["params"]["stop"] = list(out["params"]["stop"])
    return out


def collect(stream: Iterator[tuple[int, Any]], n: int) -> list[Any]:
    """The results of ``stream`` in request order."""
    out: list[Any] = [None] * n
    for i, result in stream:
        out[i] = result
    return out


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split ``items`` into consecutive chunks of at most ``size``."""
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in ``text`` (None if none occurs)."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def best_option(option_logprobs: Sequence[Sequence[float]], method: str = "sum") -> int:
    """Index of the most likely option given each option's token log-probs: by ``sum``
    (sequence likelihood) or ``mean`` (length-normalized). Ties go to the earlier option."""
    best, best_val = 0, -math.inf
    for k, lp in enumerate(option_logprobs):
        if method == "sum":
            val = math.fsum(lp)
        elif method == "mean":
            val = math.fsum(lp) / len(lp) if lp else -math.inf
        else:
            raise ValueError(f"unknown choice score {method!r} (sum, mean)")
        if val > best_val:
            best, best_val = k, val
    return best
