"""``executor: ray``: a role's backend runs as replicas on a Ray cluster (the `ray` extra).

The driver keeps the request cache: :class:`~looptool.engines.cache.CachedEngine` looks
requests up as usual and hands only the misses to :meth:`RayEngine.stream`, which yields
each result as its replica finishes it; the driver alone writes the cache, so a killed
stage resumes with only the unfinished requests.

- ``backend: hf``: an actor pool, one :class:`~looptool.engines.backends.hf.HFEngine` per actor.
  Misses go out in consecutive chunks of ``ray.batch_size`` (default: the role's
  ``batch_size``, the same chunks the local engine decodes), two chunks queued per actor,
  so a replica returns exactly what the local engine returns. A replica that dies is
  restarted by Ray (``max_restarts``) and its lost chunks re-sent (``max_task_retries``);
  past that the stage fails with an :class:`EngineError` and the cache keeps what finished.
- ``backend: vllm`` (:mod:`looptool.engines.executors.ray_vllm`): a ``ray.data.llm`` pipeline
  (``vLLMEngineProcessorConfig`` + ``build_processor``) fed with prompts rendered and
  tokenized by our own chat template code (as the local vllm backend does); results
  stream back row by row.

Ray is imported lazily: the local executor (and ``make run``) never needs it.
:func:`looptool.engines.factory.ray_engine` picks the class for a role's backend.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from looptool.engines.base import (
    EngineError,
    StreamBatches,
    batched,
)
from looptool.params.engines import EngineSpec, RaySpec

# Replicas that are not up after this long are reported instead of waited for forever
# (Ray keeps an actor pending while the cluster lacks the CPUs / GPUs it asks for).
STARTUP_TIMEOUT_S = 900.0
# Chunks queued per hf actor: one running, one waiting, so a replica never idles on the
# driver's round trip while no replica hoards work a restarted peer could take.
IN_FLIGHT_PER_REPLICA = 2


def import_ray() -> Any:
    """``import ray`` with an actionable error when the extra is missing."""
    try:
        import ray
    except ImportError as exc:
        raise EngineError(
            f"executor 'ray' needs the ray extra (pip install -e '.[ray]'): {exc}"
        ) from None
    return ray


def connect(settings: RaySpec) -> Any:
    """Join the cluster at ``settings.address`` (null: env RAY_ADDRESS, else a new local
    cluster) unless this process is connected already; return the ``ray`` module."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(
                address=settings.address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        except Exception as exc:  # Ray raises bare Exception on a startup timeout
            where = settings.address or os.environ.get("RAY_ADDRESS") or "a local cluster"
            raise EngineError(
                f"executor 'ray': cannot connect to {where}: {_one_line(exc)}"
            ) from None
    return ray


def _one_line(exc: BaseException) -> str:
    """First and last line of a (multi-line) Ray error: what happened and its cause."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [repr(exc)]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


class RayEngine(StreamBatches, ABC):
    """Batch methods over :meth:`stream` (for callers without the cache)."""

    backend: str
    model_id: str
    batch_size: int

    @abstractmethod
    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, result)`` per request as replicas finish them (StreamingEngine)."""


class HFReplica:
    """One actor of the hf pool: an :class:`HFEngine` loaded once, serving chunks."""

    def __init__(self, model_dir: str, spec: EngineSpec, tokenizer_dir: str | None) -> None:
        from looptool.engines.backends.hf import HFEngine

        self.engine = HFEngine(model_dir, spec, tokenizer_dir=tokenizer_dir, progress=False)

    def model_id(self) -> str:
        return self.engine.model_id

    def pid(self) -> int:
        return os.getpid()

    def run(self, kind: str, requests: list[Any]) -> list[Any]:
        return getattr(self.engine, kind)(requests)


class RayHFEngine(RayEngine):
    """The hf backend as a pool of ``ray.replicas`` actors."""

    backend = "hf"

    def __init__(
        self, model_dir: str | Path, spec: EngineSpec, tokenizer_dir: str | Path | None = None
    ):
        self.spec = spec
        self.batch_size = spec.batch_size
        self.chunk = spec.ray.batch_size or spec.batch_size
        self._ray = ray = connect(spec.ray)
        actor = ray.remote(
            num_cpus=spec.ray.num_cpus,
            num_gpus=spec.ray.num_gpus,
            max_restarts=spec.ray.max_restarts,
            max_task_retries=spec.ray.max_task_retries,
        )(HFReplica)
        # absolute paths: a replica's working directory is not the stage's (the cache key
        # keeps spec.model as written, so it matches the local engine's)
        model = str(Path(model_dir).resolve())
        tok = str(Path(tokenizer_dir).resolve()) if tokenizer_dir else None
        self.replicas = [actor.remote(model, spec, tok) for _ in range(spec.ray.replicas)]
        # The replicas' own identity (same formula as a local hf engine) keys the cache,
        # so local and ray runs of one model share entries.
        ids = set(
            self._get(
                [r.model_id.remote() for r in self.replicas],
                "while starting",
                timeout=STARTUP_TIMEOUT_S,
            )
        )
        if len(ids) != 1:
            raise EngineError(f"executor 'ray': replicas disagree on the model: {sorted(ids)}")
        self.model_id = ids.pop()

    def _get(self, refs: Any, what: str, timeout: float | None = None) -> Any:
        errors = self._ray.exceptions
        try:
            return self._ray.get(refs, timeout=timeout)
        except errors.GetTimeoutError:
            ray = self.spec.ray
            raise EngineError(
                f"executor 'ray' (hf): {ray.replicas} replicas not up after {timeout:.0f} s; "
                f"does the cluster have {ray.num_cpus:g} CPUs and {ray.num_gpus:g} GPUs free "
                "per replica? (`ray status` shows its resources)"
            ) from None
        except errors.RayActorError as exc:
            raise EngineError(
                f"executor 'ray' (hf): a replica died {what} and could not be replaced "
                f"(ray.max_restarts={self.spec.ray.max_restarts}, "
                f"ray.max_task_retries={self.spec.ray.max_task_retries}): {_one_line(exc)}"
            ) from None
        except errors.RayTaskError as exc:
            raise EngineError(f"executor 'ray' (hf): {what}: {exc.cause!r}") from None

    def replica_pids(self) -> list[int]:
        """Process id of each replica (tests kill one to check recovery)."""
        return self._get([r.pid.remote() for r in self.replicas], "reporting pids")

    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        chunks = deque(enumerate(batched(list(requests), self.chunk)))
        inflight: dict[Any, tuple[int, int, int]] = {}  # ref -> (chunk no, start, replica)

        def submit(replica: int) -> None:
            if chunks:
                no, part = chunks.popleft()
                ref = self.replicas[replica].run.remote(kind, list(part))
                inflight[ref] = (no, no * self.chunk, replica)

        for _ in range(IN_FLIGHT_PER_REPLICA):
            for replica in range(len(self.replicas)):
                submit(replica)
        while inflight:
            (ref,), _ = self._ray.wait(list(inflight), num_returns=1)
            no, start, replica = inflight.pop(ref)
            outs = self._get(ref, f"on {kind} chunk {no} (requests {start}..)")
            submit(replica)
            for offset, out in enumerate(outs):
                yield start + offset, out

    def close(self) -> None:
        """Stop the replicas (they also stop with the driver process)."""
        for r in self.replicas:
            self._ray.kill(r)
        self.replicas = []
