"""`engines.<role>.capabilities`: what the server behind an `openai` backend supports.

Each entry is true, false or `auto` (probed once per engine with a tiny request, printed
to stderr). A missing capability has a fallback, never a silent default: see
looptool/engines/backends/openai/engine.py and README "Serving a role over HTTP".
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Capability = bool | Literal["auto"]
CAPABILITY_NAMES = (
    "tool_parser",
    "structured_choice",
    "prompt_logprobs",
    "n",
    "return_token_ids",
    "chat_template_kwargs",
)


class EndpointCapabilities(BaseModel):
    """Per-endpoint switches; request fields a server does not know are never sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The server parses tool calls out of replies (`vllm serve --enable-auto-tool-choice
    # --tool-call-parser hermes`): requests with tools send tool_choice "auto". false:
    # tool_choice "none", and the model's <tool_call> text comes back as written.
    tool_parser: Capability = "auto"
    # vLLM `structured_outputs: {"choice": [...]}` constrains `choose` to the options.
    structured_choice: Capability = "auto"
    # vLLM `POST /tokenize` + `/v1/completions` with `prompt_logprobs`: `score` (PPL) and
    # choice by scoring the options.
    prompt_logprobs: Capability = "auto"
    # Several choices per request (`n`); false: n requests with distinct seeds.
    n: Capability = "auto"
    # vLLM `return_token_ids: true`: the generated token ids come back with the text.
    return_token_ids: Capability = "auto"
    # `chat_template_kwargs` (vLLM, SGLang, transformers serve; e.g. enable_thinking: false).
    # Strict hosted APIs answer 400 to it; false: it is not sent and the model's template
    # defaults apply (a reasoning field that comes back is still read as a think block).
    chat_template_kwargs: Capability = "auto"
