"""CLI: `looptool build-tiny-model` (the tiny random Qwen3 of looptool.loop.tiny_model)."""

from __future__ import annotations

from pathlib import Path

import click

from looptool.store.output_guard import FORCE_OPTION, OutputDir, OutputPathError, guarded_dir


@click.command("build-tiny-model")
@click.option("--out", required=True, type=OutputDir(replace=True),
              help="Output directory (new or empty; --force replaces one this command wrote).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int)
@FORCE_OPTION
def build_tiny_model_cmd(out: Path, seed: int, force: bool) -> None:
    """Build the tiny random Qwen3 + tokenizer offline (seconds; deterministic per seed)."""
    from looptool.loop.tiny_model import build_tiny_model

    try:
        with guarded_dir(out) as new:
            build_tiny_model(new, seed=seed)
    except OutputPathError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"built {out}")
