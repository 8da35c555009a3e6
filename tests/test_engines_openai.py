"""openai backend against a real HTTP server on 127.0.0.1 (a chat-completions stand-in)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from looptool.core.codec import parse_completion
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    SamplingParams,
    ScoreRequest,
)
from looptool.engines.openai_backend import OpenAIEngine, match_option, to_wire_messages
from looptool.params.engines import EngineSpec

VERDICTS = ("BOTH_CORRECT", "PRED_WRONG", "LABEL_WRONG", "BOTH_WRONG")


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
            if self.path == "/v1/chat/completions":
                return self._chat(body)
            if self.path == "/tokenize":
                text = (
                    body.get("prompt")
                    or "".join(m["content"] or "" for m in body["messages"]) + "|A:"
                )
                return self._send(200, {"tokens": [ord(ch) for ch in text]})
            if self.path == "/v1/completions":
                plp = [None] + [
                    {str(t): {"logprob": -((t % 7) + 1) / 10, "rank": 1}}
                    for t in body["prompt"][1:]
                ]
                return self._send(200, {"choices": [{"text": "x", "prompt_logprobs": plp}]})
            return self._send(404, {"error": f"no route {self.path}"})
        finally:
            with st["lock"]:
                st["inflight"] -= 1

    def _chat(self, body: dict) -> None:
        st = self.state
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
        else:
            msg = {"role": "assistant", "content": "echo: " + body["messages"][-1]["content"]}
        choices = [
            {
                "index": i,
                "message": msg,
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "e", "logprob": -0.5}]}
                if body.get("logprobs")
                else None,
            }
            for i in range(body.get("n", 1))
        ]
        self._send(200, {"id": "x", "object": "chat.completion", "choices": choices})


@pytest.fixture
def server():
    StandIn.state = {
        "lock": threading.Lock(),
        "calls": [],
        "inflight": 0,
        "max_inflight": 0,
        "fail_first": 0,
        "delay": 0.0,
        "tool_call": False,
        "choice_reply": None,
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", StandIn.state
    httpd.shutdown()
    httpd.server_close()


def _engine(url: str, **kw) -> OpenAIEngine:
    spec = EngineSpec(backend="openai", model="m", base_url=url, retry_wait_s=0.01, **kw)
    return OpenAIEngine(spec, progress=False)


def _req(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def test_generate_over_http_keeps_order_and_sends_params(server):
    url, st = server
    eng = _engine(url)
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
    assert out[0][0].logprobs == [-0.5]
    body = st["calls"][0][1]
    assert body["max_tokens"] == 7 and body["stop"] == ["\n"] and body["n"] == 2
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_structured_tool_calls_come_back_as_parseable_text(server):
    url, st = server
    st["tool_call"] = True
    gen = _engine(url).generate([_req("weather?")])[0][0]
    parsed = parse_completion(gen.text)
    assert parsed.ok and parsed.think == "think"
    assert [(c.name, c.arguments) for c in parsed.calls] == [("get_weather", {"city": "Paris"})]


def test_429_then_200_is_retried(server):
    url, st = server
    st["fail_first"] = 2
    out = _engine(url, max_retries=3).generate([_req("hi")])
    assert out[0][0].text == "echo: hi"
    assert len(st["calls"]) == 3  # two 429s, then the answer


def test_429_beyond_retries_is_a_clear_error(server):
    url, st = server
    st["fail_first"] = 10
    with pytest.raises(EngineError, match="still failing after 1 retries: HTTP 429"):
        _engine(url, max_retries=1).generate([_req("hi")])


def test_timeout_is_retried_then_reported(server):
    url, st = server
    st["delay"] = 0.5
    with pytest.raises(EngineError, match="timed out"):
        _engine(url, max_retries=1, timeout_s=0.1).generate([_req("hi")])
    assert len(st["calls"]) == 2


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
    _engine(url, concurrency=2).generate([_req(str(i)) for i in range(8)])
    assert st["max_inflight"] == 2


def test_choose_structured_then_text_match_then_scoring(server):
    url, st = server
    eng = _engine(url)
    req = ChoiceRequest(messages=[{"role": "user", "content": "judge"}], options=VERDICTS)
    assert eng.choose([req]) == ["BOTH_WRONG"]  # the stand-in honours the choice constraint
    assert st["calls"][0][1]["structured_outputs"] == {"choice": list(VERDICTS)}
    st["choice_reply"] = "Verdict: LABEL_WRONG."
    assert eng.choose([req]) == ["LABEL_WRONG"]
    st["choice_reply"] = "no idea"  # falls back to scoring each option via prompt logprobs
    pick = eng.choose([req])[0]
    sums = {o: sum(-((ord(ch) % 7) + 1) / 10 for ch in o) for o in VERDICTS}
    assert pick == max(VERDICTS, key=lambda o: sums[o])


def test_score_uses_tokenize_and_prompt_logprobs(server):
    url, _ = server
    sc = _engine(url).score(
        [ScoreRequest(messages=[{"role": "user", "content": "hi"}], completion="ab")]
    )[0]
    assert sc.token_ids == [ord("a"), ord("b")]
    assert sc.token_logprobs == pytest.approx([-((97 % 7) + 1) / 10, -((98 % 7) + 1) / 10])


def test_http_4xx_is_not_retried(server):
    url, st = server
    with pytest.raises(EngineError, match="HTTP 404"):
        _engine(url.replace("/v1", "/v2")).generate([_req("hi")])
    assert len(st["calls"]) == 1


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
