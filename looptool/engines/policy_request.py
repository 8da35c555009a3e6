"""The engine request that asks the policy for a sample's next step (probe, eval, warm-start check)."""

from __future__ import annotations

from looptool.core.prompting import policy_messages, policy_tools
from looptool.core.types import Sample
from looptool.engines.base import ChatRequest, SamplingParams


def policy_request(
    sample: Sample, date: str, sampling: SamplingParams, enable_thinking: bool = False
) -> ChatRequest:
    """The engine request that asks the policy for ``sample``'s next step (probe, eval)."""
    return ChatRequest(
        messages=policy_messages(sample, date),
        tools=policy_tools(sample),
        params=sampling,
        chat_template_kwargs={"enable_thinking": enable_thinking},
    )
