"""LoopTool's tool-aware ChatML chat template and its tokens: the tiny model's template
(looptool.loop.tiny_model) and the one a GGUF import is given (engines/gguf_import.py).

Format tags are added tokens but not special ones (DESIGN §7: special tags would be
stripped by decode(skip_special_tokens=True) and every reward would be 0).
"""

from __future__ import annotations

import json

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
