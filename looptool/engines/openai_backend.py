"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (vllm serve, sglang, ...).

Requests run concurrently (asyncio + httpx, at most ``spec.concurrency`` in flight), each
with ``spec.timeout_s``; 429, 5xx, timeouts and connection errors are retried with
exponential backoff and jitter (tenacity; a 429/503 ``Retry-After`` header is honoured,
capped at 60 s) up to ``spec.max_retries`` times. Other 4xx fail at once with the
server's message.

- generate: POST {base_url}/chat/completions. Structured ``tool_calls`` in the reply are
  rendered back to text with looptool.core.codec.render_calls and a reasoning field to
  ``<think>...</think>``, so callers parse every backend's output the same way.
  ``chat_template_kwargs`` are sent as the top-level field vllm serve / sglang accept.
- choose: a greedy request constrained to the options with vLLM's structured outputs
  (``structured_outputs: {"choice": [...]}``, vLLM >= 0.11; other servers ignore it);
  the reply must equal an option after stripping whitespace. Otherwise a reply naming
  exactly one option counts; otherwise the options are scored (below) and the most
  likely wins. If none of that works the request fails with an EngineError showing
  the reply, never a silent default.
- score: vLLM-server extensions: ``POST {root}/tokenize`` (chat messages with the
  generation prompt, and the completion alone), then ``POST {base_url}/completions``
  with the token ids and ``prompt_logprobs``. Other servers get a clear error.
The cache identity is ``model@base_url``: the backend cannot fingerprint remote weights.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tqdm.auto import tqdm

from looptool.core.codec import render_calls
from looptool.core.types import ToolCall
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Generation,
    Score,
    ScoreRequest,
)
from looptool.params.engines import EngineSpec

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    """A response worth retrying (429/5xx); carries the server's Retry-After, if any."""

    def __init__(self, status: int, body: str, retry_after: float | None):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.retry_after = retry_after


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    try:
        return min(60.0, max(0.0, float(raw))) if raw is not None else None
    except ValueError:
        return None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | httpx.TimeoutException | httpx.TransportError)


def to_wire_messages(messages: list[dict]) -> list[dict]:
    """Our chat messages -> the OpenAI wire form: tool-call arguments as JSON strings,
    call ids, and ``tool_call_id`` on tool results (matched to calls in order)."""
    out: list[dict] = []
    open_ids: list[str] = []
    for t, m in enumerate(messages):
        w = {k: v for k, v in m.items() if k != "tool_calls"}
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls, open_ids = [], []
            for k, tc in enumerate(m["tool_calls"]):
                fn = tc.get("function", tc)
                args = fn.get("arguments", {})
                cid = tc.get("id") or f"call_{t}_{k}"
                open_ids.append(cid)
                calls.append(
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": fn["name"],
                            "arguments": args
                            if isinstance(args, str)
                            else json.dumps(args, ensure_ascii=False),
                        },
                    }
                )
            w["tool_calls"] = calls
        elif m.get("role") == "tool" and "tool_call_id" not in m and open_ids:
            w["tool_call_id"] = open_ids.pop(0)
        if w.get("content") is None and m.get("role") != "assistant":
            w["content"] = ""
        out.append(w)
    return out


def reply_text(message: dict) -> str:
    """Assistant reply (content, structured tool calls, reasoning) as one text string."""
    text = message.get("content") or ""
    calls = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function", tc)
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = {"__unparsed__": args}  # keep the raw text visible; ToolMatch rejects it
        if not isinstance(args, dict):
            args = {"__unparsed__": args}
        calls.append(ToolCall(name=fn.get("name", ""), arguments=args))
    if calls:
        text = (text + "\n" if text else "") + render_calls(calls)
    think = message.get("reasoning_content") or message.get("reasoning")
    if think:
        text = f"<think>\n{think}\n</think>\n\n{text}"
    return text


def _run_sync(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from sync code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["v"] = asyncio.run(coro_fn())
        except BaseException as exc:  # re-raised in the caller's thread
            box["e"] = exc

    th = threading.Thread(target=target)
    th.start()
    th.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


class OpenAIEngine:
    """Engine over an OpenAI-compatible HTTP endpoint."""

    backend = "openai"

    def __init__(self, spec: EngineSpec, progress: bool = True):
        assert spec.base_url and spec.model  # EngineSpec validates both for this backend
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self.root_url = self.base_url.removesuffix("/v1")
        self.model = spec.model
        self.model_id = f"{spec.model}@{self.base_url}"
        self.batch_size = spec.batch_size
        self.progress = progress
        self._headers = {"Content-Type": "application/json"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise EngineError(
                    f"api_key_env: environment variable {spec.api_key_env} is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"

    # ---------------------------------------------------------------- transport
    async def _post(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, url: str, body: dict
    ) -> dict:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return exc.retry_after
            w = self.spec.retry_wait_s
            return wait_exponential_jitter(multiplier=w, jitter=w, max=30.0)(state)

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.spec.max_retries + 1),
                wait=wait,
                retry=retry_if_exception(_is_retryable),
                reraise=True,
            ):
                with attempt:
                    async with sem:
                        resp = await client.post(url, json=body)
                    if resp.status_code in RETRY_STATUS:
                        raise _Retryable(resp.status_code, resp.text, _retry_after(resp))
                    if resp.status_code >= 400:
                        raise EngineError(
                            f"openai endpoint {url}: HTTP {resp.status_code}: {resp.text[:500]}"
                        )
                    try:
                        return resp.json()
                    except json.JSONDecodeError:
                        raise EngineError(
                            f"openai endpoint {url}: reply is not JSON: {resp.text[:200]}"
                        ) from None
        except _Retryable as exc:
            raise EngineError(
                f"openai endpoint {url}: still failing after {self.spec.max_retries} retries: {exc}"
            ) from None
        except httpx.TimeoutException:
            raise EngineError(
                f"openai endpoint {url}: timed out after {self.spec.timeout_s}s "
                f"({self.spec.max_retries} retries); raise engines.<role>.timeout_s?"
            ) from None
        except httpx.TransportError as exc:
            raise EngineError(
                f"openai endpoint {self.base_url} is unreachable ({type(exc).__name__}: {exc}); "
                "is the server running and is engines.<role>.base_url right?"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    def _gather(
        self,
        jobs: list[Callable[[httpx.AsyncClient, asyncio.Semaphore], Awaitable[Any]]],
        desc: str,
    ) -> list[Any]:
        async def main() -> list[Any]:
            sem = asyncio.Semaphore(self.spec.concurrency)
            limits = httpx.Limits(max_connections=self.spec.concurrency)
            bar = tqdm(
                total=len(jobs),
                desc=desc,
                unit="req",
                disable=not self.progress or len(jobs) <= self.batch_size,
            )

            async def one(job):
                res = await job(client, sem)
                bar.update(1)
                return res

            try:
                async with httpx.AsyncClient(
                    headers=self._headers,
                    timeout=self.spec.timeout_s,
                    limits=limits,
                    trust_env=False,
                ) as client:
                    return await asyncio.gather(*(one(j) for j in jobs))
            finally:
                bar.close()

        return _run_sync(main)

    # ---------------------------------------------------------------- generate
    def _chat_body(self, messages: list[dict], tools, kwargs, **sampling: Any) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_wire_messages(messages),
            **sampling,
        }
        if tools:
            body["tools"] = tools
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        return body

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        url = f"{self.base_url}/chat/completions"

        def job(req: ChatRequest):
            p = req.params
            body = self._chat_body(
                req.messages,
                req.tools,
                req.chat_template_kwargs,
                max_tokens=p.max_tokens,
                temperature=p.temperature,
                top_p=p.top_p,
                n=p.n,
                seed=p.seed,
            )
            if p.stop:
                body["stop"] = list(p.stop)
            if p.logprobs:
                body["logprobs"] = True

            async def run(client, sem):
                data = await self._post(client, sem, url, body)
                return self._parse_chat(url, data, p.n)

            return run

        return self._gather([job(r) for r in requests], "openai generate")

    @staticmethod
    def _parse_chat(url: str, data: dict, n: int) -> list[Generation]:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise EngineError(f"openai endpoint {url}: expected {n} choices, got {len(choices)}")
        gens = []
        for c in choices:
            lp = None
            content_lp = (c.get("logprobs") or {}).get("content")
            if content_lp:
                lp = [float(t["logprob"]) for t in content_lp]
            gens.append(
                Generation(
                    text=reply_text(c.get("message") or {}),
                    token_ids=c.get("token_ids"),
                    logprobs=lp,
                    finish_reason="length" if c.get("finish_reason") == "length" else "stop",
                )
            )
        return gens

    # ---------------------------------------------------------------- score
    async def _score_one(self, client, sem, messages, tools, kwargs, completion: str) -> Score:
        tok = f"{self.root_url}/tokenize"
        pbody: dict[str, Any] = {
            "model": self.model,
            "messages": to_wire_messages(messages),
            "add_generation_prompt": True,
        }
        if tools:
            pbody["tools"] = tools
        if kwargs:
            pbody["chat_template_kwargs"] = kwargs
        prompt = await self._post(client, sem, tok, pbody)
        comp = await self._post(
            client,
            sem,
            tok,
            {"model": self.model, "prompt": completion, "add_special_tokens": False},
        )
        try:
            p_ids, c_ids = [int(t) for t in prompt["tokens"]], [int(t) for t in comp["tokens"]]
        except (KeyError, TypeError, ValueError):
            raise EngineError(
                f"openai endpoint {tok}: no token list in the reply; scoring needs a vLLM server"
            ) from None
        if not c_ids:
            return Score(token_logprobs=[], token_ids=[])
        url = f"{self.base_url}/completions"
        data = await self._post(
            client,
            sem,
            url,
            {
                "model": self.model,
                "prompt": p_ids + c_ids,
                "max_tokens": 1,
                "temperature": 0.0,
                "prompt_logprobs": 1,
                "add_special_tokens": False,
            },
        )
        try:
            plp = data["choices"][0]["prompt_logprobs"]
            lps = []
            for pos, tid in enumerate(c_ids, start=len(p_ids)):
                entry = plp[pos]
                lps.append(float(entry[str(tid)]["logprob"]))
        except (KeyError, IndexError, TypeError, ValueError):
            raise EngineError(
                f"openai endpoint {url}: reply has no usable prompt_logprobs; scoring needs a vLLM server"
            ) from None
        return Score(token_logprobs=lps, token_ids=c_ids)

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        def job(r: ScoreRequest):
            return lambda c, s: self._score_one(
                c, s, r.messages, r.tools, r.chat_template_kwargs, r.completion
            )

        return self._gather([job(r) for r in requests], "openai score")

    # ---------------------------------------------------------------- choose
    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        url = f"{self.base_url}/chat/completions"

        def job(req: ChoiceRequest):
            opts = list(req.options)
            body = self._chat_body(
                req.messages,
                req.tools,
                req.chat_template_kwargs,
                max_tokens=max(16, max(len(o) for o in opts) + 8),
                temperature=0.0,
                n=1,
                structured_outputs={"choice": opts},
            )

            async def run(client, sem):
                data = await self._post(client, sem, url, body)
                text = self._parse_chat(url, data, 1)[0].text
                pick = match_option(text, req.options)
                if pick is not None:
                    return pick
                try:
                    scores = await asyncio.gather(
                        *(
                            self._score_one(
                                client, sem, req.messages, req.tools, req.chat_template_kwargs, o
                            )
                            for o in opts
                        )
                    )
                except EngineError as exc:
                    raise EngineError(
                        f"openai choose: reply {text[:200]!r} is none of {opts}, and scoring the "
                        f"options failed: {exc}"
                    ) from None
                sums = [sum(s.token_logprobs) for s in scores]
                return opts[max(range(len(opts)), key=lambda k: (sums[k], -k))]

            return run

        return self._gather([job(r) for r in requests], "openai choose")


def match_option(text: str, options: Sequence[str]) -> str | None:
    """``text`` as one of ``options``: exact after stripping, else the only option the
    text mentions (as a whole word); None if there is no such unique option."""
    t = text.strip()
    if t in options:
        return t
    hits = [o for o in options if re.search(rf"(?<![\w]){re.escape(o)}(?![\w])", t)]
    # An option contained in a longer mentioned option (A vs A_B) is not a separate hit.
    hits = [o for o in hits if not any(o != h and o in h for h in hits)]
    return hits[0] if len(hits) == 1 else None
