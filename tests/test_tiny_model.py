"""The locally built tiny Qwen3: reloadable, deterministic, template agrees with the codec."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from looptool.core.codec import parse_completion, render_calls
from looptool.core.types import ToolCall
from looptool.engines.tiny_model import TAG_TOKENS, build_tiny_model

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)


def test_reloads_with_auto_classes(tiny_model_dir, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    n = sum(p.numel() for p in model.parameters())
    assert model.config.model_type == "qwen3" and 2e5 < n < 3e6
    assert model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<|im_end|>")]
    assert 2000 <= len(tok) <= 4200


def test_format_tags_are_single_non_special_tokens(tok):
    specials = set(tok.all_special_tokens)
    for tag in TAG_TOKENS:
        ids = tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, tag
        assert tag not in specials
    text = '<think>\nx\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    ids = tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text  # tags survive, specials go


def test_template_renders_tools_calls_and_responses_like_the_codec(tok):
    calls = [
        ToolCall(
            name="get_weather",
            arguments={
                "city": "Paris </tool_call>",
                "days": [1, 2.5],
                "opts": {"b": True, "a": None},
            },
        ),
        ToolCall(name="noop", arguments={}),
    ]
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls]},
        {"role": "tool", "name": "get_weather", "content": "sunny"},
        {"role": "tool", "name": "noop", "content": "done"},
    ]
    text = tok.apply_chat_template(msgs, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    assert "<|im_start|>assistant\n" + render_calls(calls) + "<|im_end|>" in text
    assert (
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\ndone\n</tool_response><|im_end|>"
        in text
    )
    assert text.endswith("<|im_start|>assistant\n")
    # the assistant turn parses back to the same calls
    turn = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    assert parse_completion(turn).calls == calls


def test_template_thinking_switch_and_plain_chat(tok):
    msgs = [{"role": "user", "content": "hi"}]
    on = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    off = tok.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    assert on == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert off == on + "<think>\n\n</think>\n\n"
    no_prompt = tok.apply_chat_template(
        msgs + [{"role": "assistant", "content": "yo"}], tokenize=False
    )
    assert no_prompt.endswith("<|im_start|>assistant\nyo<|im_end|>\n")


def test_rebuild_is_byte_identical_and_seed_matters(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    files = sorted(p.name for p in tiny_model_dir.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (tiny_model_dir / name).read_bytes() == (again / name).read_bytes(), name
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
