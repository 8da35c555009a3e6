"""vllm backend on the tiny model (GPU only: skipped without vllm or CUDA)."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm not installed (gpu extra)", allow_module_level=True)
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from looptool.engines.backends.hf import HFEngine  # noqa: E402
from looptool.engines.backends.vllm import VLLMEngine  # noqa: E402
from looptool.engines.base import ChatRequest, ChoiceRequest, SamplingParams, ScoreRequest  # noqa: E402
from looptool.params.engines import EngineSpec  # noqa: E402

pytestmark = pytest.mark.gpu
VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    common = {"model": str(tiny_model_dir), "dtype": "float32", "batch_size": 8}
    vl = VLLMEngine(
        tiny_model_dir,
        EngineSpec(
            backend="vllm",
            gpu_memory_utilization=0.3,
            enforce_eager=True,
            max_model_len=2048,
            **common,
        ),
    )
    hf = HFEngine(tiny_model_dir, EngineSpec(backend="hf", device="cuda", **common), progress=False)
    return vl, hf


def _msgs(i: int) -> list[dict]:
    return [{"role": "user", "content": f"what is the weather in city {i}?"}]


def test_generate_score_choose_agree_with_hf(engines):
    vl, hf = engines
    reqs = [
        ChatRequest(messages=_msgs(i), params=SamplingParams(max_tokens=8, logprobs=True))
        for i in range(4)
    ]
    v_out, h_out = vl.generate(reqs), hf.generate(reqs)
    for v, h in zip(v_out, h_out, strict=True):
        assert v[0].token_ids[:4] == h[0].token_ids[:4]  # fp32 greedy: early tokens must agree
        assert v[0].logprobs[0] == pytest.approx(h[0].logprobs[0], abs=1e-3)
    sreqs = [ScoreRequest(messages=_msgs(i), completion="it is sunny") for i in range(4)]
    for v, h in zip(vl.score(sreqs), hf.score(sreqs), strict=True):
        assert v.token_ids == h.token_ids
        assert v.token_logprobs == pytest.approx(h.token_logprobs, abs=1e-3)
    picks = vl.choose([ChoiceRequest(messages=_msgs(i), options=VERDICTS) for i in range(4)])
    assert all(p in VERDICTS for p in picks)


def test_sampling_n_and_seed(engines):
    vl, _ = engines
    req = ChatRequest(
        messages=_msgs(0), params=SamplingParams(max_tokens=8, temperature=1.0, n=3, seed=5)
    )
    a, b = vl.generate([req])[0], vl.generate([req])[0]
    assert len(a) == 3 and [g.token_ids for g in a] == [g.token_ids for g in b]
