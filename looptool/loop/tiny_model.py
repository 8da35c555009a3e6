"""Build the tiny random Qwen3 checkpoint used by tests and the CPU default, fully offline.

Steps: generate tool-calling chats programmatically, render them with our ChatML chat
template, train a byte-level BPE tokenizer on that text with `tokenizers`, add the
format tags as NON-special added tokens (DESIGN §7: special tags would be stripped by
decode(skip_special_tokens=True) and every reward would be 0), build a small Qwen3
config with seeded random weights, and `save_pretrained` model + tokenizer. Same seed
and library versions -> byte-identical files.

The template and its tokens live in looptool.engines.chatml, the chats in
looptool.engines.synthetic_chats; the builder sits in loop/ because its optional corpus
(engines.tiny_model.corpus) is read with looptool.loop.train_rows.read_samples.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from looptool.engines.chatml import (
    CHAT_TEMPLATE,
    IM_END,
    PAD,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    compile_template,
)
from looptool.engines.synthetic_chats import synthetic_chats
from looptool.params.engines import TinyModelParams
from looptool.store.io import atomic_dir


def sample_corpus(path: str | os.PathLike, date: str) -> list[str]:
    """Each sample of a SAMPLES table rendered as the policy sees it in training: the
    prompt (our system prompt, tools block, context, generation prompt) + its label."""
    from looptool.core.codec import render_label
    from looptool.core.prompting import policy_messages, policy_tools
    from looptool.loop.train_rows import read_samples

    tmpl = compile_template()
    return [
        tmpl.render(
            messages=policy_messages(s, date),
            tools=policy_tools(s),
            add_generation_prompt=True,
            enable_thinking=False,
        )
        + render_label(s.label)
        + IM_END
        for s in read_samples(path).samples
    ]


# "punct": a word (with its leading space) or a run of anything else, so JSON punctuation
# runs like '": {"' become single tokens while values and key names stay separate.
_PUNCT_SPLIT = r" ?[\p{L}\p{N}_]+|[^\p{L}\p{N}_]+"


def _pre_tokenizer(kind: str):
    from tokenizers import Regex, pre_tokenizers

    if kind == "words":
        return pre_tokenizers.ByteLevel(add_prefix_space=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if kind == "none":
        return byte_level
    split = pre_tokenizers.Split(Regex(_PUNCT_SPLIT), behavior="isolated")
    return pre_tokenizers.Sequence([split, byte_level])


def _train_tokenizer(
    texts: list[str],
    vocab_size: int,
    pretokenizer: str = "words",
    max_token_length: int | None = None,
):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _pre_tokenizer(pretokenizer)
    tok.decoder = decoders.ByteLevel()
    if pretokenizer != "words":
        # Added tokens are split off before BPE at encode time; without a word split a
        # merge learned across a tag would still be learned, wasting vocabulary on it.
        tags = re.compile("|".join(re.escape(t) for t in TAG_TOKENS + SPECIAL_TOKENS))
        texts = [piece for text in texts for piece in tags.split(text) if piece]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        max_token_length=max_token_length,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        bos_token=None,
        model_max_length=8192,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    hf.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_tiny_model(
    out_dir: str | os.PathLike,
    seed: int = 0,
    params: TinyModelParams | None = None,
    date: str = "2026-01-01",
) -> Path:
    """Build tokenizer + random Qwen3 into ``out_dir`` and return it. The files are
    written to a temp dir beside it and swapped in, so a killed build leaves no half
    checkpoint. ``params`` (engines.tiny_model) override ``seed`` when given; ``date`` is
    the one in the system prompt when ``params.corpus`` samples are rendered."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3Config

    p = params or TinyModelParams(seed=seed)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpl = compile_template()
    texts = [tmpl.render(messages=m, tools=t) for m, t in synthetic_chats(p.corpus_samples, p.seed)]
    if p.corpus:
        texts += sample_corpus(p.corpus, date)
    tok = _train_tokenizer(texts, p.vocab_size, p.pretokenizer, p.max_token_length)
    pad_id, eos_id = tok.convert_tokens_to_ids(PAD), tok.convert_tokens_to_ids(IM_END)
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_kv_heads,
        head_dim=p.hidden_size // p.num_heads,
        max_position_embeddings=p.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id], pad_token_id=pad_id, do_sample=False, max_new_tokens=256
    )
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out
