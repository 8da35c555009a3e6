"""How a sample becomes the policy's prompt: one place, shared by training, probing, eval and
export (the engine request around it: :mod:`looptool.engines.policy_request`)."""

from __future__ import annotations

from looptool.core.types import Sample
from looptool.prompts import load_prompt


def policy_system(date: str) -> str:
    """The policy's system prompt: instructions and the date."""
    return load_prompt("system_policy").format(date=date).strip()


def policy_messages(sample: Sample, date: str) -> list[dict]:
    """System prompt (instructions + date) followed by the sample's context, OpenAI format.

    A system message already in the context is appended to ours rather than dropped.
    """
    system = policy_system(date)
    messages = [m.to_openai() for m in sample.context]
    if messages and messages[0]["role"] == "system":
        system = f"{system}\n\n{messages[0]['content']}"
        messages = messages[1:]
    return [{"role": "system", "content": system}, *messages]


def policy_tools(sample: Sample) -> list[dict]:
    """The sample's tools in the OpenAI form chat templates consume."""
    return [t.to_openai() for t in sample.tools]


def render_prompt(tokenizer, sample: Sample, date: str, enable_thinking: bool = False) -> str:
    """The prompt string through the tokenizer's chat template (GRPO needs plain strings)."""
    return tokenizer.apply_chat_template(
        policy_messages(sample, date),
        tools=policy_tools(sample),
        add_generation_prompt=True,
        tokenize=False,
        enable_thinking=enable_thinking,
    )
