"""``score`` for the `openai` backend over vLLM's routes: ``POST {root}/tokenize`` renders
and tokenizes the prompt (and the completion alone), ``/v1/completions`` with token ids and
``prompt_logprobs`` returns each completion token's log-prob. ``choose`` scores options the
same way, followed by the end-of-turn token read off the server's chat template.

:class:`EndpointScoring` is a base of
:class:`~looptool.engines.backends.openai.engine.OpenAIEngine`: it uses the engine's
capabilities (``capability``, ``_caps``, ``_probed``), its ``_post`` and its settings.
"""

from __future__ import annotations

from typing import Any

from looptool.engines.backends.openai.transport import RequestFailed, Session
from looptool.engines.backends.openai.wire import to_wire_messages
from looptool.engines.base import EngineError, Score, ScoreRequest

# The probe conversation: the capability probes send it, and the end-of-turn token is read
# from its reply tokenized as a finished assistant turn.
PROBE_OPTIONS = ["looptool_probe_yes", "looptool_probe_no"]
PROBE_MESSAGES = [{"role": "user", "content": "Reply with one word."}]


class Unsupported(RequestFailed):
    """The server lacks a route or field scoring needs (a probe reads it as 'no')."""


class EndpointScoring:
    """``score`` and option scoring over vLLM's ``/tokenize`` + ``/v1/completions``."""

    model: str
    role: str
    base_url: str
    root_url: str
    _completions: str
    _caps: dict[str, bool]
    _probed: set[str]
    _end_of_turn: int | None

    def _require_scoring(self) -> None:
        if self.capability("prompt_logprobs"):
            return
        how = "probed" if "prompt_logprobs" in self._probed else "declared"
        raise EngineError(
            f"engines.{self.role}: the openai endpoint {self.base_url} cannot score "
            f"completions (capabilities.prompt_logprobs is false, {how}): perplexity "
            "(stage probe, HPPL) needs prompt log-probs. Serve this role with `vllm serve` "
            f"(POST /tokenize + prompt_logprobs), or use backend hf / vllm for engines.{self.role}"
        )

    async def _score_request(self, s: Session, r: ScoreRequest) -> Score:
        return await self._scored(s, r.messages, r.tools, r.chat_template_kwargs, r.completion)

    async def _scored(
        self, s: Session, messages, tools, kwargs, completion: str, end: int | None = None
    ) -> Score:
        """``_score_one`` once prompt_logprobs is known true: a missing route is an error
        of the endpoint's declaration, not of this request."""
        try:
            return await self._score_one(s, messages, tools, kwargs, completion, end)
        except Unsupported as exc:
            how = "probed" if "prompt_logprobs" in self._probed else "declared"
            raise EngineError(
                f"openai endpoint {exc}; engines.{self.role}.capabilities.prompt_logprobs is "
                f"true ({how}) but the server does not score: set it to false"
            ) from None

    async def _end_of_turn_id(self, s: Session) -> int:
        """The token the chat template closes an assistant turn with: a probe reply is
        tokenized as a finished assistant message and on its own; the token after it is
        the end of turn (hf and vllm use the tokenizer's EOS, which is that token)."""
        if self._end_of_turn is not None:
            return self._end_of_turn
        tok = f"{self.root_url}/tokenize"
        reply = PROBE_OPTIONS[0]
        turn = [*PROBE_MESSAGES, {"role": "assistant", "content": reply}]
        try:
            full = await self._post(
                s,
                tok,
                {"model": self.model, "messages": turn, "add_generation_prompt": False},
            )
            alone = await self._post(
                s, tok, {"model": self.model, "prompt": reply, "add_special_tokens": False}
            )
            f_ids, r_ids = [int(t) for t in full["tokens"]], [int(t) for t in alone["tokens"]]
        except (RequestFailed, KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                f"openai endpoint {tok}: cannot tokenize a finished assistant turn ({exc}); "
                f"choose needs the end-of-turn token to score options (engines.{self.role})"
            ) from None
        ends = [
            k + len(r_ids)
            for k in range(len(f_ids) - len(r_ids) + 1)
            if r_ids and f_ids[k : k + len(r_ids)] == r_ids
        ]
        if not ends or ends[-1] >= len(f_ids):
            raise EngineError(
                f"openai endpoint {tok}: the chat template of {self.model!r} puts no token "
                f"after an assistant reply; choose cannot score options with the end-of-turn "
                f"token (engines.{self.role}: declare capabilities.prompt_logprobs false)"
            )
        self._end_of_turn = f_ids[ends[-1]]
        return self._end_of_turn

    async def _score_one(
        self, s: Session, messages, tools, kwargs, completion: str, end: int | None = None
    ) -> Score:
        """Per-token log-probs of ``completion`` after the prompt, with token ``end``
        appended (and scored) when given."""
        tok = f"{self.root_url}/tokenize"
        pbody: dict[str, Any] = {
            "model": self.model,
            "messages": to_wire_messages(messages),
            "add_generation_prompt": True,
        }
        if tools:
            pbody["tools"] = tools
        # scoring needs vLLM's /tokenize, which takes the kwargs: send unless known refused
        if kwargs and self._caps.get("chat_template_kwargs", True):
            pbody["chat_template_kwargs"] = kwargs
        prompt = await self._post(s, tok, pbody)
        comp = await self._post(
            s, tok, {"model": self.model, "prompt": completion, "add_special_tokens": False}
        )
        try:
            p_ids, c_ids = [int(t) for t in prompt["tokens"]], [int(t) for t in comp["tokens"]]
        except (KeyError, TypeError, ValueError):
            raise Unsupported(f"{tok}: no token list in the reply") from None
        if end is not None:
            c_ids.append(end)
        if not c_ids:
            return Score(token_logprobs=[], token_ids=[])
        url = self._completions
        data = await self._post(
            s,
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
            lps = [
                float(plp[pos][str(tid)]["logprob"])
                for pos, tid in enumerate(c_ids, start=len(p_ids))
            ]
        except (KeyError, IndexError, TypeError, ValueError):
            raise Unsupported(f"{url}: reply has no usable prompt_logprobs") from None
        return Score(token_logprobs=lps, token_ids=c_ids)
