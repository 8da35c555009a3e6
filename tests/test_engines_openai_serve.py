"""The openai backend against a real `transformers serve` (the dev extra's `serving`) on
127.0.0.1 with the tiny Qwen3: generate matches the hf engine, choose falls back (the
server has no structured outputs, no prompt log-probs, ignores n), the judge's LLM tier
gives the hf engine's verdict rows, and `looptool engines smoke` completes.

transformers serve parses every Qwen-family reply (think / tool calls / content) and
strips the whitespace around the content, so texts are compared after strip()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest
from click.testing import CliRunner

from looptool.engines.backends.hf import HFEngine
from looptool.engines.backends.openai.engine import OpenAIEngine
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    SamplingParams,
    ScoreRequest,
)
from looptool.loop.judge.run import run_judge
from looptool.params.engines import EngineSpec
from looptool.params.loop import LoopParams
from tests.engine_fixtures import WEATHER, free_port
from tests.test_judge import call, sample, tables

pytestmark = pytest.mark.slow
READY_TIMEOUT_S = 900  # import + model load; minutes on a heavily shared CPU box


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`transformers serve <tiny model>` on a free loopback port; stopped at the end."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # a local directory: never ask the hub
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # no PyPI version check at start
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        *(sys.executable, "-c", "from transformers.cli.transformers import main; main()"),
        *("serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port)),
        *("--device", "cpu"),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > READY_TIMEOUT_S:
                pytest.fail(f"transformers serve not up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        print(f"transformers serve up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        yield f"http://127.0.0.1:{port}/v1", str(tiny_model_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> HFEngine:
    spec = EngineSpec(backend="hf", model=str(tiny_model_dir), batch_size=4)
    return HFEngine(tiny_model_dir, spec, progress=False)


def _openai(served, role: str = "judge") -> OpenAIEngine:
    url, model = served
    # one request at a time: the server generates one at a time anyway
    spec = EngineSpec(backend="openai", model=model, base_url=url, concurrency=1, timeout_s=600)
    return OpenAIEngine(spec, progress=False, role=role)


def test_generate_matches_the_hf_engine(served, hf):
    user = {"role": "user", "content": "How is the weather in Paris?"}
    turn = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    }
    result = {"role": "tool", "name": "get_weather", "content": '{"temp": 21}'}
    reqs = [
        ChatRequest(
            messages=[{"role": "user", "content": "hi"}], params=SamplingParams(max_tokens=8)
        ),
        ChatRequest(messages=[user], tools=WEATHER, params=SamplingParams(max_tokens=8)),
        ChatRequest(
            messages=[user, turn, result], tools=WEATHER, params=SamplingParams(max_tokens=8)
        ),
        ChatRequest(
            messages=[{"role": "user", "content": "hi"}],
            params=SamplingParams(max_tokens=8, stop=("166 166",)),
            chat_template_kwargs={"enable_thinking": False},
        ),
    ]
    eng = _openai(served, "policy")
    got = [g[0].text.strip() for g in eng.generate(reqs)]
    want = [g[0].text.strip() for g in hf.generate(reqs)]
    assert got == want
    assert any(want)  # not a comparison of empty strings only
    assert "166 166" not in got[3]  # the stop string is cut (the server leaves it in)
    # probed: transformers serve parses tool calls itself and returns no token ids
    assert eng.capabilities["tool_parser"] is True
    assert eng.capabilities["return_token_ids"] is False


def test_choose_falls_back_and_score_says_it_is_unavailable(served):
    eng = _openai(served)
    assert not eng.supports_choice  # probed: no structured outputs, no prompt log-probs
    req = ChoiceRequest(
        messages=[{"role": "user", "content": "Answer yes or no."}], options=("yes", "no")
    )
    (res,) = eng.choose([req])
    # the random tiny model names no option: the request fails with its replies, never a
    # default option; a real model's reply (or sampled votes) would pick one
    assert res in ("yes", "no") or (
        isinstance(res, Failed) and "no reply names exactly one of" in res.reason
    )
    with pytest.raises(EngineError, match=r"engines\.judge.*cannot score.*vllm serve"):
        eng.score([ScoreRequest(messages=[{"role": "user", "content": "hi"}], completion="x")])


def test_judge_llm_tier_gives_the_hf_verdict_rows(served, hf):
    cases = [(sample(i, city="Paris"), call(city=f"Lyon {i}"), 2.0) for i in range(3)]
    ds, probe = tables(cases)

    metrics = {}

    def verdicts(engine, extraction: str) -> pl.DataFrame:
        params = LoopParams(judge={"extraction": extraction, "order": "both", "max_tokens": 16})
        res = run_judge([engine], ds, probe, iteration=1, date="2026-11-22", params=params, seed=0)
        metrics[engine.backend] = res.metrics
        df = pl.from_arrow(res.table)
        raws = [[v["raw"].strip() for v in json.loads(r)] for r in df["raw_judge"]]
        # the judge model's identity (hf: path@fingerprint, openai: name@url) is named in
        # judge_model and in disagreement notes; everything else must be equal
        return df.drop("judge_model", "raw_judge").with_columns(
            pl.col("reason").str.replace_all(engine.model_id, "<judge>", literal=True),
            raw=pl.Series(raws),
        )

    # extraction auto: this server can neither constrain nor score, so the judge parses text
    got = verdicts(_openai(served), "auto")
    want = verdicts(hf, "parse")
    assert got.height == 3 and (got["tier"] == "llm").all()
    assert got.to_dicts() == want.to_dicts()
    # the probed capabilities are recorded in the stage metrics (the hf engine has none)
    caps = metrics["openai"]["cache"][0]["capabilities"]
    assert caps["structured_choice"] is False and caps["prompt_logprobs"] is False
    assert "capabilities" not in metrics["hf"]["cache"][0]


def test_engines_smoke_cli_completes_against_transformers_serve(served):
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
    assert "score: unavailable on this server (no prompt log-probs)" in res.output
