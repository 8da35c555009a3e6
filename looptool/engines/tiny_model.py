"""Build the tiny random Qwen3 checkpoint used by tests and the CPU default, fully offline.

Steps: generate tool-calling chats programmatically, render them with our ChatML chat
template, train a byte-level BPE tokenizer on that text with `tokenizers`, add the
format tags as NON-special added tokens (DESIGN §7: special tags would be stripped by
decode(skip_special_tokens=True) and every reward would be 0), build a small Qwen3
config with seeded random weights, and `save_pretrained` model + tokenizer. Same seed
and library versions -> byte-identical files.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

from looptool.core.codec import render_calls
from looptool.core.types import ToolCall
from looptool.params.engines import TinyModelParams
from looptool.store.io import atomic_dir

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
# Format tags: added tokens (one id each) but NOT special, so decoding keeps them.
TAG_TOKENS = [
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<tools>",
    "</tools>",
    "<tool_response>",
    "</tool_response>",
]

# JSON parts of a rendered call are escaped exactly like looptool.core.codec._dump, so a
# label rendered by the codec and an assistant turn rendered by this template agree.
_ESC = "".join(
    f"|replace('{t}', '\\\\u003c{t[1:]}')"
    for t in ("<tool_call>", "</tool_call>", "<think>", "</think>")
)

CHAT_TEMPLATE = (
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set system_text = messages[0].content -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system_text = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if system_text -%}{{- system_text + '\\n\\n' -}}{%- endif -%}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n\' -}}'
    "{%- elif system_text -%}"
    "{{- '<|im_start|>system\\n' + system_text + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message.role == 'user' or message.role == 'system' -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if message.reasoning_content -%}"
    "{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{{- message.content or '' -}}"
    "{%- if message.tool_calls -%}"
    "{%- for tc in message.tool_calls -%}"
    "{%- if tc.function is defined -%}{%- set tc = tc.function -%}{%- endif -%}"
    "{%- if message.content or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{%- if tc.arguments is string -%}{%- set args = tc.arguments -%}"
    "{%- else -%}{%- set args = tc.arguments | tojson(sort_keys=True) -%}{%- endif -%}"
    "{{- '<tool_call>\\n' + ('{\"name\": ' + (tc.name | tojson) + ', \"arguments\": ' + args + '}')"
    + _ESC
    + " + '\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' -%}"
    "{{- '<|im_start|>user' -}}{%- endif -%}"
    "{%- if message.content is string -%}{%- set body = message.content -%}"
    "{%- else -%}{%- set body = message.content | tojson -%}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + body + '\\n</tool_response>' -}}"
    "{%- if loop.last or loop_messages[loop.index0 + 1].role != 'tool' -%}"
    "{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

_VERBS = "get search find create update delete list book cancel send convert calculate check set fetch translate schedule order track compare".split()
_NOUNS = (
    "weather flight hotel user order invoice ticket stock price recipe movie song playlist "
    "email message event meeting route distance currency rate account balance file folder "
    "product review restaurant table reservation calendar task note contact address city "
    "country temperature forecast news article image video payment shipment package"
).split()
_PARAMS = (
    "city date location query limit unit currency amount user_id order_id name email "
    "start_date end_date count language format category max_results sort_by include_details "
    "latitude longitude radius price min_price max_price title description tags priority "
    "timezone from_currency to_currency origin destination passengers cuisine rating"
).split()
_WORDS = (
    "please can you I want to need the a for in on at with from and what is how much "
    "tomorrow today next week Paris London Tokyo New York Berlin Madrid Rome Sydney cheap "
    "best nearby open now my last show me tell about find book check send latest two three "
    "morning evening USD EUR JPY GBP celsius fahrenheit kilometers miles help thanks sure "
    "sorry which one more details available options here result found error not"
).split()
_TYPES = ["string", "integer", "number", "boolean", "array"]


def _value(rng: random.Random, typ: str):
    if typ == "integer":
        return rng.randint(0, 5000)
    if typ == "number":
        return round(rng.uniform(-200, 2000), rng.randint(1, 3))
    if typ == "boolean":
        return rng.random() < 0.5
    if typ == "array":
        return [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))


def _tool(rng: random.Random) -> dict:
    name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    params = rng.sample(_PARAMS, rng.randint(1, 4))
    props = {}
    for p in params:
        typ = rng.choice(_TYPES)
        prop: dict = {"type": typ, "description": f"The {p.replace('_', ' ')}"}
        if typ == "array":
            prop["items"] = {"type": "string"}
        props[p] = prop
    required = params[: rng.randint(1, len(params))]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.split('_')[0].capitalize()} the {name.split('_')[1]}.",
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))).capitalize()


def synthetic_chats(n: int, seed: int) -> list[tuple[list[dict], list[dict]]]:
    """``n`` programmatic (messages, tools) tool-use chats: the tokenizer's training text."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        tools = [_tool(rng) for _ in range(rng.randint(1, 3))]
        messages: list[dict] = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": _sentence(rng, 4, 10) + "."})
        messages.append({"role": "user", "content": _sentence(rng, 4, 14) + "?"})
        for _turn in range(rng.randint(1, 2)):
            calls = []
            for t in rng.sample(tools, rng.randint(1, len(tools))):
                fn = t["function"]
                props = fn["parameters"]["properties"]
                args = {k: _value(rng, props[k]["type"]) for k in props if rng.random() < 0.8}
                calls.append(ToolCall(name=fn["name"], arguments=args))
            think = f"<think>\n{_sentence(rng, 3, 12)}.\n</think>\n\n" if rng.random() < 0.5 else ""
            messages.append({"role": "assistant", "content": think + render_calls(calls)})
            for c in calls:
                result = {"status": "ok", "result": _value(rng, rng.choice(_TYPES))}
                messages.append({"role": "tool", "name": c.name, "content": json.dumps(result)})
        messages.append({"role": "assistant", "content": _sentence(rng, 4, 16) + "."})
        chats.append((messages, tools))
    return chats


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def compile_template(template: str = CHAT_TEMPLATE):
    """Compile a chat template with the Jinja settings transformers uses (offline corpus
    rendering without building a tokenizer first)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    return env.from_string(template)


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
