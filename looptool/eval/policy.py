"""The evaluated policy: its engine for one checkpoint, and generation that survives
single bad requests (an over-long BFCL prompt fails that item, not the whole eval) but
not an engine that fails too many (:class:`FailureBudget`): a server that is down
answers nothing, and scoring that as a model answering wrong would be a false result."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from looptool.engines.base import (
    ChatRequest,
    Engine,
    EngineError,
    Failed,
    Generation,
    is_too_long,
)
from looptool.engines.failures import failure_note
from looptool.params.engines import EngineSpec
from looptool.params.evaluation import MAX_ENGINE_FAILURE_SHARE


class EngineFailures(EngineError):
    """More of an evaluation's requests failed than ``eval.max_engine_failure_share``
    allows. An EngineError, so stages exit with its one-line message."""


class FailureBudget:
    """Counts the failed requests of one part of an evaluation (``total`` items) and raises
    :class:`EngineFailures` as soon as their share exceeds ``max_share``: the message names
    the part, the role, the engine (backend and model / endpoint) and the first error."""

    def __init__(
        self, what: str, total: int, engine: Engine, *, max_share: float = MAX_ENGINE_FAILURE_SHARE,
        role: str = "policy", unit: str = "requests",
    ) -> None:  # fmt: skip
        self.what, self.total, self.max_share = what, total, max_share
        self.role, self.unit = role, unit
        self.where = f"{engine.backend} {engine.model_id}"
        self.failed = 0
        self.too_long = 0
        self.first: str | None = None

    def fail(self, error: str) -> None:
        """Record one failed item; raise once the failures are over the share."""
        self.fail_all([error])

    def fail_all(self, errors: Sequence[str]) -> None:
        """Record failed items already known (a finished run); raise if over the share.

        A prompt longer than the model (:func:`is_too_long`) is not charged: it fails the
        same way on every healthy engine, so it says nothing about the engine (the item is
        still recorded as failed, with its reason)."""
        for error in errors:
            if is_too_long(error):
                self.too_long += 1
                continue
            self.failed += 1
            if self.first is None:
                self.first = " ".join(str(error).split())[:400]  # one line
        if self.failed > self.max_share * self.total:
            raise EngineFailures(self.message())

    def message(self) -> str:
        return (
            f"{self.what}: {self.failed} of {self.total} {self.unit} to the {self.role} engine "
            f"({self.where}) failed, more than eval.max_engine_failure_share {self.max_share:g} "
            f"allows (an engine that fails is not a model that answers wrong); first error: "
            f"{self.first}"
        )


def policy_spec(spec: EngineSpec, model_dir: str | Path) -> EngineSpec:
    """``engines.policy`` pointed at ``model_dir``: hf/vllm load it from disk; an openai
    endpoint must serve it (``checkpoint``, checked and hashed by
    engines/backends/openai/served.py)."""
    if spec.backend in ("hf", "vllm", "oracle"):  # oracle: the path seeds its errors
        return spec.model_copy(update={"model": str(model_dir)})
    if spec.backend == "openai":
        return spec.model_copy(update={"checkpoint": str(model_dir)})
    return spec


def generate_answers(
    engine: Engine,
    requests: Sequence[ChatRequest],
    chunk: int | None = None,
    budget: FailureBudget | None = None,
) -> list[tuple[str | None, str | None]]:
    """(text, None) or (None, error message) per request, in order.

    A request the engine answers with :class:`Failed` gets its reason as the error.
    Requests go in chunks; a chunk the engine rejects as a whole (EngineError) is retried
    one request at a time so only the offending requests are recorded as errors. Each
    error is charged to ``budget``, which stops the run once too many failed.
    """
    chunk = chunk or max(1, engine.batch_size) * 4
    out: list[tuple[str | None, str | None]] = []

    def record(answer: tuple[str | None, str | None]) -> None:
        out.append(answer)
        if answer[1] is not None and budget is not None:
            budget.fail(answer[1])

    for start in range(0, len(requests), chunk):
        part = list(requests[start : start + chunk])
        try:
            answers = [_answer(gens) for gens in engine.generate(part)]
        except EngineError:
            answers = None
        if answers is not None:
            for answer in answers:
                record(answer)
            continue
        for req in part:
            try:
                record(_answer(engine.generate([req])[0]))
            except EngineError as exc:
                record((None, f"engine_error: {exc}"))
    return out


def _answer(gens: list[Generation] | Failed) -> tuple[str | None, str | None]:
    if isinstance(gens, Failed):
        return None, failure_note(gens)
    return gens[0].text, None
