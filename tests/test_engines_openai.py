"""openai backend against stand-in servers on 127.0.0.1 that reject unknown fields (HTTP 422)
as real servers do: a vLLM-like one (structured outputs, token ids, /tokenize + prompt
log-probs, tool_choice rules) and a plain one like `transformers serve` (no extensions,
ignores n / logprobs, leaves stop strings in the text, one request at a time if asked)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest

from looptool.core.codec import parse_completion
from looptool.engines.backends.openai.engine import OpenAIEngine, match_option, to_wire_messages
from looptool.engines.backends.openai.wire import reply_text
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    SamplingParams,
    ScoreRequest,
)
from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import RequestCache
from looptool.params.engines import EngineSpec

VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")
CHAT_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "tools",
    "tool_choice",
    "n",
    "logprobs",
    "chat_template_kwargs",
}
VLLM_CHAT_FIELDS = CHAT_FIELDS | {"structured_outputs", "return_token_ids"}
TOKENIZE_FIELDS = {
    "model",
    "messages",
    "prompt",
    "add_generation_prompt",
    "add_special_tokens",
    "tools",
    "chat_template_kwargs",
}
COMPLETION_FIELDS = {
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "prompt_logprobs",
    "add_special_tokens",
}
TOOL_CHOICE_400 = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)


END_OF_TURN = "\x1e"  # the stand-in's end-of-turn token (one char = one token)


def render_chat(messages: list[dict], add_generation_prompt: bool) -> str:
    """The stand-in's chat template: ``|<role initial>:<content><end of turn>`` per
    message, and ``|a:`` (an open assistant turn) as the generation prompt."""
    text = "".join(f"|{m['role'][0]}:{m['content'] or ''}{END_OF_TURN}" for m in messages)
    return text + ("|a:" if add_generation_prompt else "")


def token_logprob(prev: int, tok: int) -> float:
    """The stand-in model's log-prob of ``tok`` after ``prev``: a function of the token,
    except that it never ends its turn right after an "A" (so "A" alone is unlikely)."""
    if tok == ord(END_OF_TURN) and prev == ord("A"):
        return -5.0
    return -((tok % 7) + 1) / 10


class StandIn(BaseHTTPRequestHandler):
    """Speaks enough of the OpenAI/vLLM protocol; behaviour set through ``state``."""

    state: dict = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code: int, obj: dict, headers: dict | None = None) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):  # noqa: N802 - http.server's naming
        st = self.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with st["lock"]:
            st["calls"].append((self.path, body))
            st["inflight"] += 1
            st["max_inflight"] = max(st["max_inflight"], st["inflight"])
            fail = st["fail_first"] > 0
            st["fail_first"] -= fail
        try:
            time.sleep(st["delay"])
            if fail:
                return self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
            vllm = st["profile"] == "vllm"
            chat_fields = VLLM_CHAT_FIELDS if vllm else CHAT_FIELDS
            if st["profile"] == "hosted":  # a strict hosted API: no template extensions
                chat_fields = CHAT_FIELDS - {"chat_template_kwargs"}
            routes = {"/v1/chat/completions": chat_fields}
            if vllm:
                routes |= {"/tokenize": TOKENIZE_FIELDS, "/v1/completions": COMPLETION_FIELDS}
            if self.path not in routes:
                return self._send(404, {"detail": "Not Found"})
            unknown = set(body) - routes[self.path]
            if unknown:
                return self._send(422, {"detail": f"Unexpected fields in the request: {unknown}"})
            if self.path == "/v1/chat/completions":
                return self._chat(body)
            if self.path == "/tokenize":
                text = body.get("prompt") or render_chat(
                    body["messages"], body.get("add_generation_prompt", True)
                )
                return self._send(200, {"tokens": [ord(ch) for ch in text]})
            ids = body["prompt"]
            plp = [None] + [
                {str(t): {"logprob": token_logprob(ids[k], t), "rank": 1}}
                for k, t in enumerate(ids[1:])
            ]
            return self._send(200, {"choices": [{"text": "x", "prompt_logprobs": plp}]})
        finally:
            with st["lock"]:
                st["inflight"] -= 1

    def _chat(self, body: dict) -> None:
        st = self.state
        vllm = st["profile"] == "vllm"
        last = body["messages"][-1]["content"]
        if vllm and body.get("tools") and body.get("tool_choice", "auto") == "auto":
            if not st["tool_parser"]:
                return self._send(400, {"error": {"message": TOOL_CHOICE_400}})
        if "busy" in last:
            return self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
        if "bad call" in last:  # the server's own tool parser crashes on this reply
            return self._send(500, {"error": "Internal Server Error"})
        if "too long" in last:
            return self._send(400, {"error": {"message": "maximum context length exceeded"}})
        if "structured_outputs" in body:
            msg = {
                "role": "assistant",
                "content": st["choice_reply"] or body["structured_outputs"]["choice"][-1],
            }
        elif st["tool_call"]:
            msg = {
                "role": "assistant",
                "content": None,
                "reasoning_content": "think",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": json.dumps({"city": "Paris"}),
                        },
                    }
                ],
            }
        elif body.get("temperature", 1.0) > 0:
            msg = {"role": "assistant", "content": st["sampled"](body["seed"])}
        elif st["free_reply"] is not None:
            msg = {"role": "assistant", "content": st["free_reply"]}
        else:
            text = "echo: " + last
            if not vllm and body.get("stop"):
                text += body["stop"][0] + " more"  # left in, as transformers serve does
            msg = {"role": "assistant", "content": text}
        n = body.get("n", 1) if vllm else 1  # the plain server ignores n
        choices = [
            {
                "index": i,
                "message": msg,
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "e", "logprob": -0.5}]}
                if body.get("logprobs") and vllm
                else None,
                **({"token_ids": [7, 8]} if body.get("return_token_ids") else {}),
            }
            for i in range(n)
        ]
        self._send(200, {"id": "x", "object": "chat.completion", "choices": choices})


def _serve(profile: str, threaded: bool = True, **state):
    StandIn.state = {
        "lock": threading.Lock(),
        "calls": [],
        "inflight": 0,
        "max_inflight": 0,
        "fail_first": 0,
        "delay": 0.0,
        "tool_call": False,
        "tool_parser": True,
        "choice_reply": None,
        "free_reply": None,
        "sampled": lambda seed: f"sample {seed}",
        "profile": profile,
        **state,
    }
    cls = ThreadingHTTPServer if threaded else HTTPServer
    httpd = cls(("127.0.0.1", 0), StandIn)
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1", StandIn.state


@pytest.fixture
def server():
    httpd, url, st = _serve("vllm")
    yield url, st
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def plain():
    """A server without vLLM's extensions (like transformers serve)."""
    httpd, url, st = _serve("plain")
    yield url, st
    httpd.shutdown()
    httpd.server_close()


def _engine(url: str, role: str = "judge", **kw) -> OpenAIEngine:
    spec = EngineSpec(backend="openai", model="m", base_url=url, retry_wait_s=0.01, **kw)
    return OpenAIEngine(spec, progress=False, role=role)


def _req(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def _chat_calls(st) -> list[dict]:
    return [b for p, b in st["calls"] if p == "/v1/chat/completions"]


ALL_ON = {
    "tool_parser": True,
    "structured_choice": True,
    "prompt_logprobs": True,
    "n": True,
    "return_token_ids": True,
    "chat_template_kwargs": True,
}
ALL_OFF = dict.fromkeys(ALL_ON, False)


# --- generate ---------------------------------------------------------------------------


def test_generate_over_http_keeps_order_and_sends_params(server):
    url, st = server
    eng = _engine(url, capabilities=ALL_ON)
    reqs = [
        _req(
            f"q{i}",
            params=SamplingParams(max_tokens=7, n=2, stop=("\n",), logprobs=True),
            chat_template_kwargs={"enable_thinking": False},
        )
        for i in range(5)
    ]
    out = eng.generate(reqs)
    assert [[g.text for g in gens] for gens in out] == [[f"echo: q{i}"] * 2 for i in range(5)]
    assert out[0][0].logprobs == [-0.5] and out[0][0].token_ids == [7, 8]
    body = st["calls"][0][1]
    assert body["max_tokens"] == 7 and body["stop"] == ["\n"] and body["n"] == 2
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["return_token_ids"] is True


def test_structured_tool_calls_come_back_as_parseable_text(server):
    url, st = server
    st["tool_call"] = True
    gen = _engine(url, capabilities=ALL_ON).generate([_req("weather?")])[0][0]
    parsed = parse_completion(gen.text)
    assert parsed.ok and parsed.think == "think"
    assert [(c.name, c.arguments) for c in parsed.calls] == [("get_weather", {"city": "Paris"})]
    assert gen.text == (
        '<think>\nthink\n</think>\n\n<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Paris"}}\n</tool_call>'
    )


def test_reasoning_cut_by_max_tokens_stays_an_open_think_block():
    text = reply_text({"content": None, "reasoning_content": "still thinking"}, cut_short=True)
    assert text == "<think>\nstill thinking"
    parsed = parse_completion(text)
    assert parsed.think == "still thinking" and not parsed.calls and parsed.text == ""


def test_stop_string_is_stripped_like_the_hf_engine(plain):
    url, st = plain
    gen = _engine(url, capabilities=ALL_OFF).generate(
        [_req("hi", params=SamplingParams(stop=("STOP",)))]
    )[0][0]
    assert gen.text == "echo: hi"  # the server returned "echo: hiSTOP more"


def test_tools_without_a_server_tool_parser_send_tool_choice_none(server):
    url, st = server
    st["tool_parser"] = False  # vllm serve without --enable-auto-tool-choice
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    out = _engine(url, capabilities={"tool_parser": False}).generate([_req("x", tools=tools)])
    assert out[0][0].text == "echo: x"
    assert _chat_calls(st)[-1]["tool_choice"] == "none"
    # probed: the 400 to tool_choice "auto" reads as "no parser", then requests go through
    st["calls"].clear()
    eng = _engine(url)
    assert eng.generate([_req("y", tools=tools)])[0][0].text == "echo: y"
    assert eng.capabilities["tool_parser"] is False
    assert _chat_calls(st)[-1]["tool_choice"] == "none"


def test_declared_capability_the_server_rejects_is_a_clear_error(server):
    url, st = server
    st["tool_parser"] = False
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(EngineError, match=r"engines\.policy\.capabilities\.tool_parser is true"):
        _engine(url, role="policy", capabilities={"tool_parser": True}).generate(
            [_req("x", tools=tools)]
        )


def test_n_on_a_server_that_ignores_it_sends_separate_seeded_requests(plain):
    url, st = plain
    eng = _engine(url, capabilities={"n": "auto", "return_token_ids": False})
    gens = eng.generate([_req("x", params=SamplingParams(n=3, temperature=1.0, seed=5))])[0]
    assert eng.capabilities["n"] is False  # probed: asked for 2 choices, got 1
    texts = [g.text for g in gens]
    assert len(texts) == 3 and len(set(texts)) == 3  # three distinct seeds
    greedy = eng.generate([_req("y", params=SamplingParams(n=2))])[0]
    assert [g.text for g in greedy] == ["echo: y", "echo: y"]  # one request, copied
    assert sum(1 for b in _chat_calls(st) if b["messages"][-1]["content"] == "y") == 1


def test_plain_server_never_gets_fields_it_does_not_know(plain):
    url, st = plain
    eng = _engine(url)
    eng.generate([_req("hi", params=SamplingParams(logprobs=True))])
    eng.choose(
        [ChoiceRequest(messages=[{"role": "user", "content": "PRED_WRONG"}], options=VERDICTS)]
    )
    assert eng.capabilities == {
        "tool_parser": "auto",
        "structured_choice": False,
        "prompt_logprobs": False,
        "n": False,
        "return_token_ids": False,
        "chat_template_kwargs": "auto",  # no request carried template kwargs
    }
    real = [b for b in _chat_calls(st) if b["messages"][-1]["content"] != "Reply with one word."]
    assert real and all(set(b) <= CHAT_FIELDS for b in real)


# --- retries, failures, timeouts --------------------------------------------------------


def test_429_then_200_is_retried(server):
    url, st = server
    st["fail_first"] = 2
    out = _engine(url, max_retries=3, capabilities=ALL_ON).generate([_req("hi")])
    assert out[0][0].text == "echo: hi"
    assert len(st["calls"]) == 3  # two 429s, then the answer


def test_429_beyond_retries_fails_that_request_only(server):
    url, st = server
    eng = _engine(url, max_retries=2, capabilities=ALL_ON)
    out = eng.generate([_req("busy"), _req("b")])
    assert isinstance(out[0], Failed) and "HTTP 429" in out[0].reason
    assert out[1][0].text == "echo: b"
    assert sum(1 for b in _chat_calls(st) if b["messages"][-1]["content"] == "busy") == 3


def test_http_500_is_retried_once_and_fails_only_its_item(server):
    url, st = server
    eng = _engine(url, max_retries=5, capabilities=ALL_ON)
    out = eng.generate([_req("ok 1"), _req("a bad call"), _req("ok 2")])
    assert [o[0].text for o in (out[0], out[2])] == ["echo: ok 1", "echo: ok 2"]
    assert isinstance(out[1], Failed) and "HTTP 500" in out[1].reason
    assert sum(1 for b in _chat_calls(st) if b["messages"][-1]["content"] == "a bad call") == 2


def test_http_400_is_not_retried_and_fails_only_its_item(server):
    url, st = server
    out = _engine(url, capabilities=ALL_ON).generate([_req("too long"), _req("fine")])
    assert isinstance(out[0], Failed) and "maximum context length" in out[0].reason
    assert out[1][0].text == "echo: fine"
    assert sum(1 for b in _chat_calls(st) if b["messages"][-1]["content"] == "too long") == 1


def test_http_404_is_an_endpoint_error_and_not_retried(server):
    url, st = server
    with pytest.raises(EngineError, match="HTTP 404"):
        _engine(url.replace("/v1", "/v2"), capabilities=ALL_ON).generate([_req("hi")])
    assert len(st["calls"]) == 1


def test_timeout_is_retried_then_fails_the_request(server):
    url, st = server
    st["delay"] = 0.5
    out = _engine(url, max_retries=1, timeout_s=0.1, capabilities=ALL_ON).generate([_req("hi")])
    assert isinstance(out[0], Failed) and "no reply within timeout_s=0.1" in out[0].reason
    assert "after 2 attempt(s)" in out[0].reason


def test_queue_time_on_a_one_at_a_time_server_does_not_count_against_the_timeout():
    # Each request takes 0.25 s and the server handles one at a time: the 12th answer
    # comes ~3 s after all were sent. The timeout (1.5 s) runs from sending, extended while
    # the server finishes other requests, so none of the queued requests times out.
    httpd, url, st = _serve("plain", threaded=False, delay=0.25)
    try:
        eng = _engine(url, concurrency=12, timeout_s=1.5, max_retries=0, capabilities=ALL_OFF)
        out = eng.generate([_req(f"q{i}") for i in range(12)])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [o[0].text for o in out] == [f"echo: q{i}" for i in range(12)]


def test_unreachable_endpoint_message():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(EngineError, match=rf"openai endpoint {url} is unreachable.*base_url"):
        _engine(url, max_retries=1).generate([_req("hi")])


def test_concurrency_limit_is_respected(server):
    url, st = server
    st["delay"] = 0.05
    _engine(url, concurrency=2, capabilities=ALL_ON).generate([_req(str(i)) for i in range(8)])
    assert st["max_inflight"] == 2


# --- streaming --------------------------------------------------------------------------


def test_stream_yields_in_completion_order_and_the_cache_persists_each(server, tmp_path):
    url, st = server
    st["delay"] = 0.05
    eng = _engine(url, concurrency=4, capabilities=ALL_ON)
    got = list(eng.stream("generate", [_req(f"q{i}") for i in range(6)]))
    assert sorted(i for i, _ in got) == list(range(6))
    assert all(res[0].text == f"echo: q{i}" for i, res in got)
    with RequestCache(tmp_path / "c.sqlite") as cache:
        cached = CachedEngine(eng, cache, progress=False, flush_every=1)
        assert cached.streaming
        reqs = [_req(f"r{i}") for i in range(3)] + [_req("a bad call")]
        out = cached.generate(reqs)
        assert isinstance(out[3], Failed)
        assert cached.stats()["failed"] == 1 and cache.info()["entries"] == 3
        n_calls = len(st["calls"])
        assert [o[0].text for o in cached.generate(reqs[:3])] == [
            "echo: r0",
            "echo: r1",
            "echo: r2",
        ]
        assert len(st["calls"]) == n_calls  # all from the cache


def test_closing_a_stream_early_cancels_the_rest(server):
    url, st = server
    st["delay"] = 0.3
    eng = _engine(url, concurrency=1, capabilities=ALL_ON)
    it = eng.stream("generate", [_req(f"q{i}") for i in range(20)])
    first = next(it)
    it.close()
    assert first[0] == 0
    time.sleep(0.4)
    assert len(st["calls"]) < 5


# --- choose -----------------------------------------------------------------------------


def test_choose_structured_then_text_match_then_scoring(server):
    url, st = server
    eng = _engine(url, capabilities=ALL_ON)
    assert eng.supports_choice  # declared: the judge's extraction auto uses choose
    req = ChoiceRequest(messages=[{"role": "user", "content": "judge"}], options=VERDICTS)
    assert eng.choose([req]) == ["BOTH_WRONG"]  # the stand-in honours the choice constraint
    assert st["calls"][0][1]["structured_outputs"] == {"choice": list(VERDICTS)}
    st["choice_reply"] = "Verdict: LABEL_WRONG."
    assert eng.choose([req]) == ["LABEL_WRONG"]
    st["choice_reply"] = "no idea"  # falls back to scoring each option via prompt logprobs
    pick = eng.choose([req])[0]
    sums = {o: sum(-((ord(ch) % 7) + 1) / 10 for ch in o) for o in VERDICTS}
    assert pick == max(VERDICTS, key=lambda o: sums[o])


def test_choose_on_a_server_without_structured_outputs_falls_back(plain):
    url, st = plain
    eng = _engine(url)  # auto: probes find no structured outputs, no scoring
    req = ChoiceRequest(messages=[{"role": "user", "content": "judge"}], options=VERDICTS)
    st["free_reply"] = "<think>\nBOTH_CORRECT?\n</think>\n\nI say PRED_WRONG."
    assert eng.choose([req]) == ["PRED_WRONG"]  # the greedy reply names one option
    assert not eng.supports_choice
    # greedy reply names none: sampled replies (distinct seeds) vote
    st["free_reply"] = "hmm"
    seeds = []
    st["sampled"] = lambda seed: seeds.append(seed) or ("LABEL_WRONG" if len(seeds) > 1 else "x")
    assert eng.choose([req]) == ["LABEL_WRONG"]
    assert len(set(seeds)) == 4  # choice_samples separate requests, distinct seeds
    # nothing names an option: that request fails with the replies, never a default
    st["sampled"] = lambda seed: "no verdict"
    out = eng.choose([req])[0]
    assert isinstance(out, Failed) and "no reply names exactly one of" in out.reason
    assert "'hmm'" in out.reason and "engines.judge.capabilities" in out.reason


# --- score ------------------------------------------------------------------------------


def test_score_uses_tokenize_and_prompt_logprobs(server):
    url, _ = server
    sc = _engine(url, capabilities=ALL_ON).score(
        [ScoreRequest(messages=[{"role": "user", "content": "hi"}], completion="ab")]
    )[0]
    assert sc.token_ids == [ord("a"), ord("b")]
    assert sc.token_logprobs == pytest.approx([-((97 % 7) + 1) / 10, -((98 % 7) + 1) / 10])


def test_score_without_prompt_logprobs_names_the_role_and_the_way_out(plain):
    url, _ = plain
    eng = _engine(url, role="policy")
    with pytest.raises(EngineError) as exc:
        eng.score([ScoreRequest(messages=[{"role": "user", "content": "hi"}], completion="ab")])
    msg = str(exc.value)
    assert "engines.policy" in msg and "prompt_logprobs is false, probed" in msg
    assert "vllm serve" in msg and "backend hf / vllm" in msg


def test_probe_results_are_kept(server):
    url, st = server
    eng = _engine(url)
    for _ in range(2):
        eng.score([ScoreRequest(messages=[{"role": "user", "content": "hi"}], completion="ab")])
    assert eng.capabilities["prompt_logprobs"] is True
    probes = [b for p, b in st["calls"] if p == "/tokenize" and b.get("prompt") == "yes"]
    assert len(probes) == 1


# --- wire helpers -----------------------------------------------------------------------


def test_wire_messages_and_option_matching():
    msgs = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "name": "f", "content": "ok"},
    ]
    wire = to_wire_messages(msgs)
    assert wire[1]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert wire[2]["tool_call_id"] == wire[1]["tool_calls"][0]["id"]
    assert match_option(" PRED_WRONG\n", VERDICTS) == "PRED_WRONG"
    assert match_option("PRED_WRONG or LABEL_WRONG", VERDICTS) is None
    assert match_option("nothing", VERDICTS) is None
    assert match_option("A_B", ("A", "A_B")) == "A_B"


def test_engines_smoke_cli_on_a_server_that_cannot_score(plain):
    from click.testing import CliRunner

    from looptool.cli import main

    url, _ = plain
    args = ["engines", "smoke", "--backend", "openai", "--model", "m", "--base-url", url]
    res = CliRunner().invoke(main, [*args, "--n", "2", "--max-tokens", "8"])
    assert res.exit_code == 0, res.output
    assert "score: unavailable on this server (no prompt log-probs)" in res.output
    # the stand-in's replies name no verdict: choose reports its failures, with the reason
    assert "choose: first failure: choose: no reply names exactly one of" in res.output


def test_stage_metrics_record_the_endpoint_capabilities(server):
    from stages._engines import engine_stats

    url, _ = server
    eng = _engine(url, capabilities={"n": False})
    assert eng.supports_choice  # probes structured_choice (enough: it is there)
    caps = engine_stats(eng)["capabilities"]
    assert caps["n"] is False and caps["structured_choice"] is True
    assert caps["prompt_logprobs"] == "auto"  # not needed, not probed


def test_declared_capabilities_are_part_of_the_cache_identity() -> None:
    from looptool.engines.backends.openai.engine import OpenAIEngine

    def ident(**caps) -> str:
        spec = EngineSpec(
            backend="openai", model="m", base_url="http://127.0.0.1:9/v1", capabilities=caps
        )
        eng = OpenAIEngine(spec)
        assert eng.model_id == "m@http://127.0.0.1:9/v1"  # the endpoint's identity
        # declared: known without a server (127.0.0.1:9 answers nothing)
        return eng.cache_identities("generate", [_req("hi", tools=[{"type": "function"}])])[0]

    base = {"return_token_ids": False, "n": False}
    assert ident(**base, tool_parser=False) != ident(**base, tool_parser=True)
    assert ident(tool_parser=False, **base) == ident(**base, tool_parser=False)
    # a capability this request does not use is not part of its identity
    assert ident(**base, tool_parser=True, structured_choice=True) == ident(
        **base, tool_parser=True
    )


def test_chat_template_kwargs_are_sent_only_where_the_server_takes_them() -> None:
    thinking_off = {"enable_thinking": False}
    for profile, sent in (("hosted", False), ("plain", True)):
        httpd, url, st = _serve(profile)
        try:
            out = _engine(url).generate([_req("hi", chat_template_kwargs=thinking_off)])
            assert not isinstance(out[0], Failed), out  # a strict API still answers
            calls = [b for b in _chat_calls(st) if b["messages"][-1]["content"] == "hi"]
            assert calls and all(("chat_template_kwargs" in b) is sent for b in calls)
            declared = _engine(url, capabilities={"chat_template_kwargs": False})
            declared.generate([_req("again", chat_template_kwargs=thinking_off)])
            assert all("chat_template_kwargs" not in b for b in _chat_calls(st)[-1:])
        finally:
            httpd.shutdown()
            httpd.server_close()


# --- cache identity and choice scoring (#26) --------------------------------------------


def test_choose_scores_each_option_with_the_end_of_turn_token(server):
    """As hf and vllm do: without the end-of-turn token a prefix option always wins under
    ``choice_score: sum`` ("A" over "AB"); with it, the model's wish to go on after "A"
    counts, and "AB" wins."""
    url, st = server
    eng = _engine(url, capabilities={**ALL_ON, "structured_choice": False})
    st["free_reply"] = "no idea"  # the greedy reply names no option: score them
    req = ChoiceRequest(messages=[{"role": "user", "content": "pick"}], options=("A", "AB"))
    assert eng.choose([req]) == ["AB"]
    scored = [b["prompt"] for p, b in st["calls"] if p == "/v1/completions"]
    assert len(scored) == 2 and all(ids[-1] == ord(END_OF_TURN) for ids in scored)
    assert {tuple(ids[-3:-1]) for ids in scored} == {(ord(":"), ord("A")), (ord("A"), ord("B"))}


def test_probed_capabilities_are_part_of_the_cache_identity(tmp_path):
    """A server restarted with other flags answers differently: an answer cached while the
    server parsed tool calls is not reused once a probe finds that it no longer does."""
    httpd, url, st = _serve("vllm")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    req = _req("hi", tools=tools)
    try:
        with RequestCache(tmp_path / "c.sqlite") as cache:
            first = CachedEngine(_engine(url), cache, progress=False)
            first.generate([req])
            assert first.inner.capabilities["tool_parser"] is True
            st["tool_parser"] = False  # restarted without --enable-auto-tool-choice
            again = CachedEngine(_engine(url), cache, progress=False)
            out = again.generate([req])
            assert again.inner.capabilities["tool_parser"] is False
            assert again.stats()["cache_misses"] == 1 and not isinstance(out[0], Failed)
            sent = [b for b in _chat_calls(st) if b["messages"][-1]["content"] == "hi"]
            assert [b["tool_choice"] for b in sent] == ["auto", "none"]
            # same flags again: served from the cache
            third = CachedEngine(_engine(url), cache, progress=False)
            third.generate([req])
            assert third.stats()["cache_hits"] == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_choice_score_and_choice_samples_are_part_of_the_choose_cache_identity(server, tmp_path):
    url, _ = server
    req = ChoiceRequest(messages=[{"role": "user", "content": "judge"}], options=VERDICTS)
    with RequestCache(tmp_path / "c.sqlite") as cache:

        def misses(**kw) -> int:
            eng = CachedEngine(_engine(url, capabilities=ALL_ON, **kw), cache, progress=False)
            eng.choose([req])
            return eng.stats()["cache_misses"]

        assert misses(choice_score="sum") == 1
        assert misses(choice_score="sum") == 0
        assert misses(choice_score="mean") == 1
        assert misses(choice_score="mean", choice_samples=2) == 1
        # generate answers do not depend on the choice knobs
        gen = CachedEngine(_engine(url, capabilities=ALL_ON), cache, progress=False)
        gen.generate([_req("x")])
        other = CachedEngine(
            _engine(url, capabilities=ALL_ON, choice_score="mean"), cache, progress=False
        )
        other.generate([_req("x")])
        assert other.stats()["cache_hits"] == 1


def test_cache_key_version_covers_the_openai_reply_normalisation():
    """Replies are normalised (stop strings cut, reasoning as a think block) since key
    version 2: entries written before that hold raw replies and must not match."""
    from looptool.engines.cache_store import KEY_VERSION

    assert KEY_VERSION >= 2
