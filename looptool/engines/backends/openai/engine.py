"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (vllm serve, SGLang,
transformers serve, hosted APIs).

Transport (concurrency, queue-aware timeouts, retries by cause, per-request ``Failed``):
looptool.engines.backends.openai.transport. Replies are normalised to the hf engine's text
(looptool.engines.backends.openai.wire). Scoring over vLLM's routes:
looptool.engines.backends.openai.scoring. ``stream`` runs a whole stage's requests
concurrently and yields each result as it completes, so the request cache persists them
as they come.

What a server supports is declared per role in ``engines.<role>.capabilities`` (true /
false / ``auto`` = probed once per engine, see looptool.params.endpoint); a field a server
does not know is never sent, and every missing capability has a fallback:

- generate: tools are sent with ``tool_choice: "auto"`` when the server parses tool calls
  (``tool_parser``), else ``"none"`` and the model's ``<tool_call>`` text is returned as
  written (callers parse it with looptool.core.codec, as for every backend). ``n > 1``
  without ``n``: one request when greedy (copied, like hf), else n requests with
  distinct seeds. ``return_token_ids`` asks vLLM for the generated token ids.
- choose: with ``structured_choice`` a greedy request constrained by vLLM's
  ``structured_outputs: {"choice": [...]}``; otherwise a greedy free-text reply naming
  exactly one option (:func:`match_option`); otherwise, with ``prompt_logprobs``, each
  option is scored followed by the end-of-turn token (as hf and vllm do, so an option
  that is a prefix of another cannot win by being shorter; the token is read off the
  server's chat template through ``/tokenize``) and the most likely wins; otherwise ``choice_samples`` sampled
  replies (distinct seeds) vote. A request none of that answers is ``Failed`` with the
  replies in the reason, never a default option.
- score: vLLM's ``POST {root}/tokenize`` and ``/v1/completions`` with token ids and
  ``prompt_logprobs``. Without ``prompt_logprobs`` scoring raises an EngineError naming
  the role and what to use instead (never a silent None).
The engine's ``model_id`` is ``model@base_url`` (the backend cannot fingerprint remote
weights; a served policy adds its checkpoint's, see backends/openai/served.py). The request cache
keys each request by :meth:`OpenAIEngine.cache_identities`: ``model_id`` plus the value of
every capability that shapes what is sent for that request (declared or probed, so the
probe runs before the cache is read), and for ``choose`` the ``choice_score`` /
``choice_samples`` knobs: an answer is reused only under the same server behaviour.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from looptool.core.codec import parse_completion
from looptool.engines.backends.openai.scoring import (
    PROBE_MESSAGES,
    PROBE_OPTIONS,
    EndpointScoring,
    Unsupported,
)
from looptool.engines.backends.openai.transport import (
    EndpointRejected,
    Job,
    RequestFailed,
    Session,
    Transport,
)
from looptool.engines.backends.openai.wire import choice_generation, match_option, to_wire_messages
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Generation,
    SamplingParams,
    StreamBatches,
    best_option,
)
from looptool.params.endpoint import CAPABILITY_NAMES
from looptool.params.engines import EngineSpec

__all__ = ["OpenAIEngine", "match_option", "to_wire_messages"]

# Substrings of a server's 4xx message that point at a field a capability made us send.
_REJECTED_FIELD = {
    "tool_parser": ("tool_choice", "tool choice", "tool-call-parser", "auto-tool-choice"),
    "structured_choice": ("structured_outputs",),
    "return_token_ids": ("return_token_ids",),
    "prompt_logprobs": ("prompt_logprobs",),
    "chat_template_kwargs": ("chat_template_kwargs",),
}
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "looptool_probe",
        "description": "Capability probe; never called.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def sample_seed(seed: int, k: int) -> int:
    """The seed of the k-th of n separate sampled requests (31 bits, distinct per k)."""
    digest = hashlib.sha256(f"{seed}\0{k}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


class OpenAIEngine(EndpointScoring, StreamBatches):
    """Engine over an OpenAI-compatible HTTP endpoint."""

    backend = "openai"

    def __init__(self, spec: EngineSpec, progress: bool = True, role: str = "<role>"):
        assert spec.base_url and spec.model  # EngineSpec validates both for this backend
        self.spec = spec
        self.role = role
        self.base_url = spec.base_url.rstrip("/")
        self.root_url = self.base_url.removesuffix("/v1")
        self.model = spec.model
        self.model_id = f"{spec.model}@{self.base_url}"
        self._completions = f"{self.base_url}/completions"  # vLLM's scoring route
        self.batch_size = spec.batch_size
        self.progress = progress
        headers = {"Content-Type": "application/json"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise EngineError(
                    f"api_key_env: environment variable {spec.api_key_env} is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.transport = Transport(
            self.base_url,
            headers,
            concurrency=spec.concurrency,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            retry_wait_s=spec.retry_wait_s,
            rejected_hint=self._rejected_hint,
        )
        declared = spec.capabilities.model_dump()
        self._caps: dict[str, bool] = {k: v for k, v in declared.items() if v != "auto"}
        self._probed: set[str] = set()
        self._caps_lock = threading.Lock()
        self._end_of_turn: int | None = None  # token id, read from the chat template once

    # ---------------------------------------------------------------- capabilities
    @property
    def capabilities(self) -> dict[str, bool | str]:
        """Each capability as declared or probed so far (``auto``: not needed yet)."""
        return {k: self._caps.get(k, "auto") for k in CAPABILITY_NAMES}

    def capability(self, name: str) -> bool:
        """Whether the server has ``name``, probing it first if it is ``auto``."""
        self._resolve([name])
        return self._caps[name]

    @property
    def supports_choice(self) -> bool:
        """``choose`` is real constrained choice here (structured outputs or scoring), so the
        judge's ``extraction: auto`` uses it; otherwise the judge parses free text."""
        return self.capability("structured_choice") or self.capability("prompt_logprobs")

    def _needs(self, kind: str, request: Any) -> list[str]:
        """The capabilities that shape what is sent for one request of ``kind``."""
        if kind == "generate":
            return self._generate_needs([request])
        if kind == "choose":
            return self._choose_needs([request])
        if kind == "score":
            return ["prompt_logprobs"]
        raise ValueError(f"unknown request kind {kind!r} (generate, score, choose)")

    def cache_identities(self, kind: str, requests: Sequence[Any]) -> list[str]:
        """Per request: the identity its cached answer is stored under. ``model_id`` plus
        every capability that shapes that request (probed now when ``auto``): the same
        request to a server restarted with other flags (tool parser, structured outputs,
        template kwargs) gets a different answer, so it must not hit the old one."""
        needs = [self._needs(kind, r) for r in requests]
        self._resolve([n for ns in needs for n in ns])
        extra = ""
        if kind == "choose":
            extra = (
                f";choice_score={self.spec.choice_score};choice_samples={self.spec.choice_samples}"
            )
        out = []
        for r, ns in zip(requests, needs, strict=True):
            caps = {n: self._caps[n] for n in ns}
            if getattr(r, "chat_template_kwargs", None):
                # score sends the kwargs to /tokenize unless the server is known to refuse
                caps["chat_template_kwargs"] = self._caps.get("chat_template_kwargs", True)
            flags = ",".join(f"{k}={int(v)}" for k, v in sorted(caps.items()))
            out.append(f"{self.model_id}[{flags}{extra}]")
        return out

    def _resolve(self, names: Sequence[str]) -> None:
        with self._caps_lock:
            todo = [n for n in dict.fromkeys(names) if n not in self._caps]
            if not todo:
                return
            found = dict(self.transport.run([lambda s, n=n: self._probe(s, n) for n in todo]))
            for k, name in enumerate(todo):
                self._caps[name] = bool(found[k])
                self._probed.add(name)
            report = ", ".join(f"{n}={self._caps[n]}" for n in todo)
            print(f"openai endpoint {self.base_url}: probed {report}", file=sys.stderr)

    async def _probe(self, s: Session, name: str) -> bool:
        chat = f"{self.base_url}/chat/completions"
        base = {
            "model": self.model,
            "messages": PROBE_MESSAGES,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        try:
            if name == "tool_parser":
                await self._post(s, chat, {**base, "tools": [_PROBE_TOOL], "tool_choice": "auto"})
                return True
            if name == "structured_choice":
                body = {**base, "max_tokens": 16, "structured_outputs": {"choice": PROBE_OPTIONS}}
                msg = (await self._post(s, chat, body))["choices"][0]["message"]
                if (msg.get("content") or "").strip() in PROBE_OPTIONS:
                    return True
                if not (msg.get("reasoning") or msg.get("reasoning_content")):
                    return False
                # A reasoning parser (vllm serve --reasoning-parser qwen3) applies the
                # constraint only after the think block, and a model that thinks by
                # default answered in reasoning: ask again with thinking off, as the
                # judge's choose requests are sent (judge.thinking: false)
                body["chat_template_kwargs"] = {"enable_thinking": False}
                msg = (await self._post(s, chat, body))["choices"][0]["message"]
                return (msg.get("content") or "").strip() in PROBE_OPTIONS
            if name == "n":
                body = {**base, "n": 2, "temperature": 1.0, "seed": 0}
                return len((await self._post(s, chat, body)).get("choices") or []) == 2
            if name == "return_token_ids":
                data = await self._post(s, chat, {**base, "return_token_ids": True})
                return isinstance(data["choices"][0].get("token_ids"), list)
            if name == "chat_template_kwargs":
                await self._post(s, chat, {**base, "chat_template_kwargs": {}})
                return True
            if name == "prompt_logprobs":
                return (await self._score_one(s, PROBE_MESSAGES, None, None, "yes")).n_tokens > 0
        except (RequestFailed, Unsupported, KeyError, IndexError, TypeError):
            return False
        raise ValueError(f"unknown capability {name!r}")

    def _rejected_hint(self, body: str) -> str | None:
        low = body.lower()
        for cap, needles in _REJECTED_FIELD.items():
            if self._caps.get(cap) and any(n in low for n in needles):
                how = "probed" if cap in self._probed else "declared"
                return (
                    f"the server rejects a field sent because engines.{self.role}.capabilities."
                    f"{cap} is true ({how}); set it to false"
                )
        return None

    async def _post(self, s: Session, url: str, body: dict) -> dict:
        try:
            return await self.transport.post(s, url, body)
        except EndpointRejected as exc:
            if exc.status == 404 and url in (f"{self.root_url}/tokenize", self._completions):
                raise Unsupported(str(exc)) from None  # a server without vLLM's scoring routes
            raise

    # ---------------------------------------------------------------- streaming
    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` per request as each completes (all run concurrently,
        at most ``concurrency`` in flight); a request that fails alone yields ``Failed``."""
        if kind == "generate":
            self._resolve(self._generate_needs(requests))
            jobs: list[Job] = [lambda s, r=r: self._generate_one(s, r) for r in requests]
        elif kind == "choose":
            self._resolve(self._choose_needs(requests))
            jobs = [lambda s, r=r: self._choose_one(s, r) for r in requests]
        elif kind == "score":
            self._require_scoring()
            jobs = [lambda s, r=r: self._score_request(s, r) for r in requests]
        else:
            raise ValueError(f"unknown request kind {kind!r} (generate, score, choose)")
        return self.transport.run(jobs)

    # ---------------------------------------------------------------- generate
    @staticmethod
    def _generate_needs(requests: Sequence[ChatRequest]) -> list[str]:
        needs = ["return_token_ids"]
        if any(r.tools for r in requests):
            needs.append("tool_parser")
        if any(r.chat_template_kwargs for r in requests):
            needs.append("chat_template_kwargs")
        if any(r.params.n > 1 for r in requests):
            needs.append("n")
        return needs

    def _chat_body(self, messages: list[dict], tools, kwargs, **sampling: Any) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_wire_messages(messages),
            **sampling,
        }
        if tools:
            body["tools"] = tools
            # vLLM answers 400 to tools without tool_choice unless it parses tool calls
            body["tool_choice"] = "auto" if self._caps.get("tool_parser") else "none"
        if kwargs and self._caps.get("chat_template_kwargs"):
            body["chat_template_kwargs"] = kwargs
        if self._caps.get("return_token_ids"):
            body["return_token_ids"] = True
        return body

    async def _chat(self, s: Session, req: ChatRequest, n: int, seed: int) -> list[Generation]:
        p = req.params
        sampling: dict[str, Any] = {
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": seed,
        }
        if n > 1:
            sampling["n"] = n
        if p.stop:
            sampling["stop"] = list(p.stop)
        if p.logprobs:
            sampling["logprobs"] = True
        body = self._chat_body(req.messages, req.tools, req.chat_template_kwargs, **sampling)
        url = f"{self.base_url}/chat/completions"
        data = await self._post(s, url, body)
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            if n > 1 and len(choices) == 1:
                raise EngineError(
                    f"openai endpoint {url}: asked for n={n} choices, got 1: the server ignores "
                    f"n; set engines.{self.role}.capabilities.n: false"
                )
            raise RequestFailed(f"{url}: expected {n} choices, got {len(choices)}")
        return [choice_generation(c, p.stop) for c in choices]

    async def _generate_one(self, s: Session, req: ChatRequest) -> list[Generation]:
        p = req.params
        if p.n == 1 or self._caps.get("n"):
            return await self._chat(s, req, p.n, p.seed)
        if p.greedy:  # n greedy samples are identical: decode once (as the hf engine does)
            gen = (await self._chat(s, req, 1, p.seed))[0]
            return [copy.deepcopy(gen) for _ in range(p.n)]
        parts = await asyncio.gather(
            *(self._chat(s, req, 1, sample_seed(p.seed, k)) for k in range(p.n))
        )
        return [g[0] for g in parts]

    # ---------------------------------------------------------------- choose
    def _choose_needs(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        needs = ["structured_choice", "prompt_logprobs"]
        if any(r.tools for r in requests):
            needs.append("tool_parser")
        if any(r.chat_template_kwargs for r in requests):
            needs.append("chat_template_kwargs")
        if self.spec.choice_samples > 1:
            needs.append("n")
        return needs

    async def _choose_one(self, s: Session, req: ChoiceRequest) -> str:
        opts = list(req.options)
        chat = ChatRequest(
            messages=req.messages,
            tools=req.tools,
            params=SamplingParams(max_tokens=max(16, max(len(o) for o in opts) + 8)),
            chat_template_kwargs=req.chat_template_kwargs,
        )
        replies: list[str] = []
        if self._caps["structured_choice"]:
            body = self._chat_body(
                chat.messages,
                chat.tools,
                chat.chat_template_kwargs,
                max_tokens=chat.params.max_tokens,
                temperature=0.0,
                seed=chat.params.seed,
                structured_outputs={"choice": opts},
            )
            data = await self._post(s, f"{self.base_url}/chat/completions", body)
            replies.append(choice_generation((data.get("choices") or [{}])[0]).text)
        else:
            replies.append((await self._chat(s, chat, 1, chat.params.seed))[0].text)
        pick = match_option(parse_completion(replies[0]).text, opts)
        if pick is not None:
            return pick
        if self._caps["prompt_logprobs"]:
            eot = await self._end_of_turn_id(s)
            scores = await asyncio.gather(
                *(
                    self._scored(s, req.messages, req.tools, req.chat_template_kwargs, o, eot)
                    for o in opts
                )
            )
            return opts[best_option([sc.token_logprobs for sc in scores], self.spec.choice_score)]
        k = self.spec.choice_samples
        if k > 0:
            sampled = ChatRequest(
                messages=chat.messages,
                tools=chat.tools,
                params=SamplingParams(max_tokens=chat.params.max_tokens, temperature=1.0, n=k),
                chat_template_kwargs=chat.chat_template_kwargs,
            )
            replies += [g.text for g in await self._generate_one(s, sampled)]
            votes = Counter(
                p
                for p in (match_option(parse_completion(t).text, opts) for t in replies[1:])
                if p is not None
            )
            if votes:
                top = max(votes.values())
                return next(o for o in opts if votes.get(o) == top)  # ties: earlier option
        shown = "; ".join(repr(t[:80]) for t in replies[:3])
        raise RequestFailed(
            f"choose: no reply names exactly one of {opts} ({len(replies)} replies: {shown}); "
            "this server can neither constrain the choice nor score the options "
            f"(engines.{self.role}.capabilities structured_choice / prompt_logprobs)"
        )
