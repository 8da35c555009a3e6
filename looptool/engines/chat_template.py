"""Chat-template rendering and tokenization shared by the hf and vllm backends, so both
see byte-identical prompts and the same prompt/completion token boundary."""

from __future__ import annotations

from typing import Any

from looptool.engines.base import EngineError


def render_chat(
    tokenizer: Any,
    messages: list[dict],
    tools: list[dict] | None = None,
    chat_template_kwargs: dict | None = None,
) -> str:
    """The model's chat template applied to ``messages`` (+ tools), ending with the
    assistant generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise EngineError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "LoopTool needs one that renders tools and tool calls"
        )
    try:
        return tokenizer.apply_chat_template(
            messages,
            tools=tools or None,
            add_generation_prompt=True,
            tokenize=False,
            **(chat_template_kwargs or {}),
        )
    except Exception as exc:  # jinja errors carry the template's own message
        raise EngineError(
            f"chat template failed on a request: {type(exc).__name__}: {exc}"
        ) from None


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no BOS/EOS added (templates already place them)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_chat(
    tokenizer: Any,
    messages: list[dict],
    tools: list[dict] | None = None,
    chat_template_kwargs: dict | None = None,
) -> list[int]:
    return encode_text(tokenizer, render_chat(tokenizer, messages, tools, chat_template_kwargs))


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """All ids that end a generation: the generation config's EOS list + the tokenizer's."""
    ids: list[int] = []
    gen_eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.append(gen_eos)
    elif gen_eos:
        ids.extend(int(i) for i in gen_eos)
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise EngineError(f"{getattr(tokenizer, 'name_or_path', '?')}: no EOS token configured")
    return ids


def end_of_turn_id(tokenizer: Any, generation_config: Any = None) -> int:
    """The token that closes an assistant turn (appended to options when scoring a choice,
    so an option that is a prefix of another cannot win by being shorter)."""
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    return eos_token_ids(tokenizer, generation_config)[0]
