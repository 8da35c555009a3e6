"""The locally built tiny Qwen3: reloadable, deterministic, template agrees with the codec."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from looptool.core.codec import parse_completion, render_calls
from looptool.core.types import ToolCall
from looptool.engines.chatml import TAG_TOKENS
from looptool.loop.tiny_model import build_tiny_model

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


@pytest.mark.parametrize(("pretokenizer", "max_share"), [("punct", 0.8), ("none", 0.5)])
def test_corpus_tokenizer_fits_the_samples_and_keeps_the_format(
    tiny_model_dir, tmp_path, pretokenizer, max_share
):
    """engines.tiny_model.corpus (+ pretokenizer "punct", the CPU default): the tokenizer
    is trained on rendered samples, so their prompts take far fewer tokens; text still
    round-trips and the tags stay single non-special tokens."""
    import pyarrow as pa

    from looptool.core.tables import SAMPLES, sample_to_row
    from looptool.loop.tiny_model import sample_corpus
    from looptool.params.engines import TinyModelParams
    from looptool.store.io import write_parquet_atomic
    from tests.store_synth import KINDS, make_sample

    rows = [sample_to_row(make_sample(f"{i}", KINDS[i % len(KINDS)])) for i in range(60)]
    path = tmp_path / "samples.parquet"
    write_parquet_atomic(path, pa.Table.from_pylist(rows, schema=SAMPLES))
    texts = sample_corpus(path, "2026-11-22")
    assert len(texts) == 60 and all("Today's date is 2026-11-22." in t for t in texts)
    assert texts[0].endswith("</tool_call><|im_end|>")

    params = TinyModelParams(corpus=str(path), pretokenizer=pretokenizer, corpus_samples=200)
    built = build_tiny_model(tmp_path / "fit", params=params, date="2026-11-22")
    fit = AutoTokenizer.from_pretrained(built, local_files_only=True)
    base = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    fit_n = sum(len(fit(t, add_special_tokens=False)["input_ids"]) for t in texts)
    base_n = sum(len(base(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert fit_n < max_share * base_n
    for text in texts[:10] + ['Ünïcode → 東京 {"a": [1, 2.5]}']:
        assert fit.decode(fit(text, add_special_tokens=False)["input_ids"]) == text
    specials = set(fit.all_special_tokens)
    for tag in TAG_TOKENS:
        assert len(fit(tag, add_special_tokens=False)["input_ids"]) == 1 and tag not in specials
    # the same inputs rebuild the same tokenizer
    again = build_tiny_model(tmp_path / "again", params=params, date="2026-11-22")
    assert (again / "tokenizer.json").read_bytes() == (built / "tokenizer.json").read_bytes()
