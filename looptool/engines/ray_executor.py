"""``executor: ray``: a role's backend runs as replicas on a Ray cluster (the `ray` extra).

The driver keeps the request cache: :class:`~looptool.engines.cache.CachedEngine` looks
requests up as usual and hands only the misses to :meth:`RayEngine.stream`, which yields
each result as its replica finishes it; the driver alone writes the cache, so a killed
stage resumes with only the unfinished requests.

- ``backend: hf``: an actor pool, one :class:`~looptool.engines.hf.HFEngine` per actor.
  Misses go out in consecutive chunks of ``ray.batch_size`` (default: the role's
  ``batch_size``, the same chunks the local engine decodes), two chunks queued per actor,
  so a replica returns exactly what the local engine returns. A replica that dies is
  restarted by Ray (``max_restarts``) and its lost chunks re-sent (``max_task_retries``);
  past that the stage fails with an :class:`EngineError` and the cache keeps what finished.
- ``backend: vllm``: a ``ray.data.llm`` pipeline (``vLLMEngineProcessorConfig`` +
  ``build_processor``) fed with prompts rendered and tokenized by our own chat template
  code (as the local vllm backend does); results stream back row by row.

Ray is imported lazily: the local executor (and ``make run``) never needs it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
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


class RayEngine(ABC):
    """Batch methods over :meth:`stream` (for callers without the cache)."""

    backend: str
    model_id: str
    batch_size: int

    @abstractmethod
    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, result)`` per request as replicas finish them (StreamingEngine)."""

    def _collect(self, kind: str, requests: Sequence[Any]) -> list[Any]:
        out: list[Any] = [None] * len(requests)
        for i, result in self.stream(kind, requests):
            out[i] = result
        return out

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation] | Failed]:
        return self._collect("generate", requests)

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score | Failed]:
        return self._collect("score", requests)

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str | Failed]:
        return self._collect("choose", requests)


class HFReplica:
    """One actor of the hf pool: an :class:`HFEngine` loaded once, serving chunks."""

    def __init__(self, model_dir: str, spec: EngineSpec, tokenizer_dir: str | None) -> None:
        from looptool.engines.hf import HFEngine

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


# --------------------------------------------------------------- vllm via ray.data.llm
def processor_config(
    model_dir: str | Path, tokenizer_dir: str | Path, spec: EngineSpec
) -> dict[str, Any]:
    """Keyword arguments of ``ray.data.llm.vLLMEngineProcessorConfig`` for ``spec``: the
    local vllm backend's engine arguments, ``ray.replicas`` fixed engine replicas, and no
    chat-template / tokenize / detokenize stages (prompts arrive as our own token ids;
    vLLM detokenizes what it generates)."""
    engine_kwargs: dict[str, Any] = {
        "tokenizer": str(tokenizer_dir),
        "tensor_parallel_size": spec.tensor_parallel_size,
        "gpu_memory_utilization": spec.gpu_memory_utilization,
        "enable_prefix_caching": spec.enable_prefix_caching,
        "enforce_eager": spec.enforce_eager,
        "seed": spec.seed,
        "dtype": spec.dtype,
    }
    if spec.max_model_len:
        engine_kwargs["max_model_len"] = spec.max_model_len
    return {
        "model_source": str(model_dir),
        "engine_kwargs": engine_kwargs,
        "batch_size": spec.ray.batch_size or spec.batch_size,
        "concurrency": (spec.ray.replicas, spec.ray.replicas),
        # one bundle per vLLM worker (x tensor_parallel_size); num_gpus < 1 shares a GPU
        # between roles (then keep gpu_memory_utilization below the share)
        "placement_group_config": {
            "bundle_per_worker": {"CPU": spec.ray.num_cpus, "GPU": spec.ray.num_gpus or 1.0}
        },
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,
        # a request vLLM rejects comes back as a row error -> Failed(reason) for it alone
        "should_continue_on_error": True,
    }


def sampling_dict(p: SamplingParams, sample: int = 0) -> dict[str, Any]:
    """The local vllm backend's ``SamplingParams`` as the row dict ray.data.llm expects,
    for one of ``p.n`` samples (ray.data.llm keeps only a request's first output, so n > 1
    becomes n rows; sample k samples with seed ``p.seed + k``)."""
    return {
        "n": 1,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "stop": list(p.stop) or None,
        "seed": None if p.greedy else p.seed + sample,
        "logprobs": 1 if p.logprobs else None,
    }


def _token_logprob(step: Any, token: int) -> float:
    # vLLMOutputData keeps {token_id: {"logprob", "rank", "decoded_token"}}; a trip
    # through Arrow may turn that into (key, value) pairs or the int keys into strings
    if step is not None and not isinstance(step, dict):
        step = dict(step)
    entry = step.get(token, step.get(str(token))) if step else None
    if entry is None:
        raise EngineError(f"ray.data.llm: no log-prob for token {token} in {step!r}")
    return float(entry["logprob"])


def postprocess_row(row: dict[str, Any]) -> dict[str, Any]:
    """Reduce one ray.data.llm output row to plain columns (runs on the cluster):
    ``generate``/``constrained`` rows keep text, token ids, finish reason and (when asked)
    the sampled tokens' log-probs; ``score`` rows the completion tokens' log-probs."""
    out = {"row": int(row["row"]), "sample": int(row["sample"]), "kind": row["kind"]}
    if row.get("__inference_error__"):
        return {**out, "error": str(row["__inference_error__"])}
    if row["kind"] == "score":
        plp, n_prompt = row["prompt_logprobs"], int(row["n_prompt"])
        ids = [int(t) for t in row["completion_ids"]]
        return {
            **out,
            "logprobs": [_token_logprob(plp[n_prompt + t], i) for t, i in enumerate(ids)],
        }
    ids = [int(t) for t in row["generated_tokens"]]
    lps = None
    if row.get("logprobs") is not None and row["want_logprobs"]:
        lps = [_token_logprob(step, t) for step, t in zip(row["logprobs"], ids, strict=True)]
    # vLLMOutputData has no finish reason: a reply that used every allowed token was cut
    finish = "length" if len(ids) >= int(row["max_tokens"]) else "stop"
    return {
        **out,
        "text": row["generated_text"],
        "token_ids": ids,
        "logprobs": lps,
        "finish": finish,
    }


def _row_error(out: dict[str, Any]) -> str | None:
    """A pipeline row's error: rows vLLM failed on skip the postprocess step, so they
    arrive with Ray's own ``__inference_error__`` column."""
    return out.get("error") or out.get("__inference_error__") or None


class RayVLLMEngine(RayEngine):
    """The vllm backend as a ``ray.data.llm`` pipeline of ``ray.replicas`` vLLM engines."""

    backend = "vllm"

    def __init__(
        self, model_dir: str | Path, spec: EngineSpec, tokenizer_dir: str | Path | None = None
    ):
        from transformers import AutoTokenizer

        from looptool.engines.chat_template import end_of_turn_id
        from looptool.engines.factory import model_fingerprint

        self.spec = spec
        self.batch_size = spec.batch_size
        self._ray = connect(spec.ray)
        tok_dir = Path(tokenizer_dir or model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        self.end_of_turn = end_of_turn_id(self.tokenizer)
        self.config_kwargs = processor_config(Path(model_dir).resolve(), tok_dir.resolve(), spec)
        # the local vllm backend's identity: both run the same engine on the same prompts
        fp = model_fingerprint(model_dir)
        tok_part = f"+tok@{model_fingerprint(tok_dir)}" if tokenizer_dir else ""
        self.model_id = f"{spec.model}@{fp}{tok_part}:{spec.dtype}"

    def _prompt(self, r: Any) -> list[int]:
        from looptool.engines.chat_template import encode_chat

        return encode_chat(self.tokenizer, r.messages, r.tools, r.chat_template_kwargs)

    def rows(self, kind: str, requests: Sequence[Any]) -> list[dict[str, Any]]:
        """Input rows of the pipeline: one per sample (generate), per request (choose,
        constrained to the options), per request with a non-empty completion (score)."""
        from looptool.engines.chat_template import encode_text

        rows: list[dict[str, Any]] = []
        for i, r in enumerate(requests):
            base = {"row": i, "kind": kind}
            if kind == "generate":
                prompt = self._prompt(r)
                for k in range(1 if r.params.greedy else r.params.n):
                    sp = sampling_dict(r.params, k)
                    rows.append(
                        {
                            **base,
                            "sample": k,
                            "tokenized_prompt": prompt,
                            "sampling_params": sp,
                            "max_tokens": sp["max_tokens"],
                            "want_logprobs": r.params.logprobs,
                        }
                    )
            elif kind == "choose":
                longest = max(len(encode_text(self.tokenizer, o)) for o in r.options)
                sp = {
                    "temperature": 0.0,
                    "max_tokens": longest + 4,
                    "structured_outputs": {"choice": list(r.options)},
                }
                rows.append(
                    {
                        **base,
                        "sample": 0,
                        "tokenized_prompt": self._prompt(r),
                        "sampling_params": sp,
                        "max_tokens": sp["max_tokens"],
                        "want_logprobs": False,
                    }
                )
            elif kind == "score":
                completion = encode_text(self.tokenizer, r.completion)
                if completion:
                    rows.append(self._score_row(base, 0, self._prompt(r), completion))
            else:
                raise EngineError(f"executor 'ray' (vllm): unknown request kind {kind!r}")
        return rows

    @staticmethod
    def _score_row(base: dict, sample: int, prompt: list[int], completion: list[int]) -> dict:
        return {
            **base,
            "kind": "score",
            "sample": sample,
            "tokenized_prompt": prompt + completion,
            "n_prompt": len(prompt),
            "completion_ids": completion,
            "sampling_params": {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1},
        }

    def _run(self, rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Rows through a fresh ray.data.llm processor, yielded as they complete."""
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        processor = build_processor(
            vLLMEngineProcessorConfig(**self.config_kwargs), postprocess=postprocess_row
        )
        yield from processor(self._ray.data.from_items(rows)).iter_rows()

    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        rows = self.rows(kind, requests)
        want = {}
        for row in rows:
            want[row["row"]] = want.get(row["row"], 0) + 1
        for i in range(len(requests)):
            if i not in want:  # scoring an empty completion: nothing to ask
                yield i, Score(token_logprobs=[], token_ids=[])
        parts: dict[int, list[dict]] = {}
        fallback: list[int] = []
        for out in self._run(rows):
            i = int(out["row"])
            if error := _row_error(out):
                if want.pop(i, None) is not None:
                    yield i, Failed(f"vllm on ray: {error}")
                continue
            if i not in want:
                continue  # a sample of a request that already failed
            parts.setdefault(i, []).append(out)
            if len(parts[i]) < want[i]:
                continue
            got = sorted(parts.pop(i), key=lambda o: o["sample"])
            if kind == "choose" and got[0]["text"].strip() not in requests[i].options:
                fallback.append(i)  # cut or off-option: scored below, like the local backend
            else:
                yield i, self._result(kind, requests[i], got)
        if fallback:
            yield from self._choose_by_score(requests, fallback)

    def _result(self, kind: str, request: Any, outs: list[dict]) -> Any:
        from looptool.engines.chat_template import encode_text

        if kind == "score":
            return Score(
                token_logprobs=outs[0]["logprobs"],
                token_ids=encode_text(self.tokenizer, request.completion),
            )
        if kind == "choose":
            return outs[0]["text"].strip()
        gens = [
            Generation(
                text=o["text"],
                token_ids=o["token_ids"],
                logprobs=o["logprobs"],
                finish_reason=o["finish"],
            )
            for o in outs
        ]
        if request.params.greedy and request.params.n > 1:
            gens = [Generation(**vars(gens[0])) for _ in range(request.params.n)]
        return gens

    def _choose_by_score(
        self, requests: Sequence[Any], todo: list[int]
    ) -> Iterator[tuple[int, Any]]:
        from looptool.engines.base import best_option
        from looptool.engines.chat_template import encode_text

        rows = []
        for i in todo:
            prompt = self._prompt(requests[i])
            for k, opt in enumerate(requests[i].options):
                ids = encode_text(self.tokenizer, opt) + [self.end_of_turn]
                rows.append(self._score_row({"row": i}, k, prompt, ids))
        per_req: dict[int, dict[int, list[float]]] = {}
        failed: set[int] = set()
        for out in self._run(rows):
            i = int(out["row"])
            if error := _row_error(out):
                if i not in failed:
                    failed.add(i)
                    yield i, Failed(f"vllm on ray: {error}")
                continue
            per_req.setdefault(i, {})[out["sample"]] = out["logprobs"]
            opts = requests[i].options
            if i not in failed and len(per_req[i]) == len(opts):
                lps = [per_req[i][k] for k in range(len(opts))]
                yield i, opts[best_option(lps, self.spec.choice_score)]


def ray_engine(spec: EngineSpec, param: str) -> RayEngine:
    """The ``executor: ray`` engine for ``spec`` (hf: actor pool; vllm: ray.data.llm)."""
    from looptool.engines.factory import check_model_dir

    model_dir = check_model_dir(spec.model, f"{param}.model")
    tok_dir = check_model_dir(spec.tokenizer, f"{param}.tokenizer") if spec.tokenizer else None
    if spec.backend == "hf":
        return RayHFEngine(model_dir, spec, tokenizer_dir=tok_dir)
    if spec.backend == "vllm":
        return RayVLLMEngine(model_dir, spec, tokenizer_dir=tok_dir)
    raise EngineError(f"{param}.executor: 'ray' runs hf or vllm, not {spec.backend!r}")
