"""SFT warm start: completion-only training examples, a short SFT run, the plain copy when
disabled, and the held-out format check."""

from __future__ import annotations

import json

import pytest
from test_train import DATE, state_dict, synthetic_samples, write_samples

from looptool.core.codec import parse_completion
from looptool.core.match import match_strict
from looptool.core.prompting import render_prompt
from looptool.engines.base import Generation
from looptool.loop.train_rows import TrainError
from looptool.loop.train_setup import token_ids
from looptool.loop.warmstart import (
    copy_base,
    format_check,
    label_completion,
    sft_examples,
    train_sft,
)
from looptool.params.train import SFTParams

SFT = SFTParams(
    learning_rate=5e-3,
    max_steps=3,
    batch_size=4,
    micro_batch_size=2,
    save_steps=2,
    device="cpu",
    cpu_threads=1,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def _byte_bpe_with_double_newline():
    """A byte-level BPE (GPT-2 pre-tokenizer, as SmolLM2's) whose one merge is "\\n\\n"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["ĊĊ"] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("Ċ", "Ċ")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


def test_sft_examples_keep_the_prompt_tokens_the_policy_sees():
    tok = _byte_bpe_with_double_newline()
    prompt = "<think>\n\n</think>\n\n"
    completion = "Which city?"
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    joint = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    assert joint[: len(prompt_ids)] != prompt_ids  # the joint string splits the last "\n\n"
    ex = sft_examples(token_ids(tok, [prompt]), token_ids(tok, [completion]))
    ids, mask = ex["input_ids"][0], ex["completion_mask"][0]
    assert ids[: len(prompt_ids)] == prompt_ids
    assert mask == [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
    assert tok.decode(ids[len(prompt_ids) :]) == completion


def test_label_completion_is_what_the_policy_should_generate(tokenizer):
    for sample in synthetic_samples(20, seed=3):
        completion = label_completion(tokenizer, sample)
        assert completion.endswith(tokenizer.eos_token)
        text = completion[: -len(tokenizer.eos_token)]
        assert match_strict(parse_completion(text), sample.label).ok
        # The chat template renders the same assistant turn after the prompt's header
        if sample.label.calls:
            prompt = render_prompt(tokenizer, sample, DATE)
            assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_sft_trains_and_saves(tmp_path, tiny_model_dir):
    import torch

    data = write_samples(tmp_path / "seed.parquet", synthetic_samples(16, seed=4), dataset=False)
    out = tmp_path / "iter_0" / "model"
    res = train_sft(data, tiny_model_dir, out, SFT, date=DATE, scratch_root=tmp_path / "scratch")
    m = res.metrics
    assert m["algorithm"] == "sft" and m["steps"] == 3 and m["samples_trained"] == 16
    assert m["loss_first"] > 0 and m["loss_last"] < m["loss_first"]
    assert [r["step"] for r in res.steps] == [1, 2, 3]
    assert (out / "tokenizer.json").exists()
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["padding_side"] == "left"  # saved for generation, like the base
    before, after = state_dict(tiny_model_dir), state_dict(out)
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert not list((tmp_path / "scratch").rglob("checkpoint-*"))


def test_disabled_warm_start_copies_the_base(tmp_path, tiny_model_dir):
    import torch

    out = tmp_path / "model"
    res = copy_base(tiny_model_dir, out)
    assert res.metrics == {"enabled": False, "base_model": str(tiny_model_dir), "steps": 0}
    before, after = state_dict(tiny_model_dir), state_dict(out)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (out / "tokenizer.json").exists()


def test_too_long_samples_are_an_error(tmp_path, tiny_model_dir):
    data = write_samples(tmp_path / "s.parquet", synthetic_samples(2), dataset=False)
    short = SFT.model_copy(update={"max_length": 32})
    with pytest.raises(TrainError, match="longer than warmstart.max_length"):
        train_sft(data, tiny_model_dir, tmp_path / "m", short, date=DATE, scratch_root=tmp_path)


class EchoEngine:
    """Answers each request with a fixed text, in order (format_check's rates are exact)."""

    backend, model_id, batch_size = "stub", "stub", 8

    def __init__(self, texts):
        self.texts = list(texts)
        self.requests = []

    def generate(self, requests):
        self.requests += list(requests)
        return [[Generation(text=self.texts.pop(0))] for _ in requests]


def test_format_check_rates():
    from looptool.core.codec import render_label

    samples = [s for s in synthetic_samples(40, seed=5) if s.label.calls][:4]
    texts = [
        render_label(samples[0].label),  # exact
        render_label(samples[1].label).replace(samples[1].label.calls[0].name, "other_fn"),
        "<tool_call>{not json</tool_call>",  # unparsable
        "I cannot help.",  # parses, no call
    ]
    engine = EchoEngine(texts)
    out = format_check(engine, samples, date=DATE, max_tokens=32)
    assert out == {
        "n": 4,
        "engine_failed": [],
        "parse_ok_rate": 0.75,
        "tool_call_rate": 0.5,
        "text_answer_rate": 0.25,  # "I cannot help."
        "unparsed_rate": 0.25,  # the broken JSON
        "name_match_rate": 0.25,
        "match_rate": 0.25,
    }
    req = engine.requests[0]
    assert req.params.temperature == 0.0 and req.tools and req.messages[0]["role"] == "system"


def test_format_check_on_the_tiny_model(tiny_model_dir):
    from looptool.engines import make_engine
    from looptool.params.engines import EngineSpec

    engine = make_engine(
        EngineSpec(backend="hf", model=str(tiny_model_dir), device="cpu"), "policy"
    )
    out = format_check(engine, synthetic_samples(3, seed=6), date=DATE, max_tokens=8)
    assert out["n"] == 3 and 0.0 <= out["parse_ok_rate"] <= 1.0
