"""`looptool eval bfcl`: score BFCL predictions and print a per-category accuracy table."""

from __future__ import annotations

import json
from pathlib import Path

import click

from looptool.core.match_bfcl import BfclDataError
from looptool.eval.bfcl import DEFAULT_DATA_DIR, evaluate_file
from looptool.store.io import write_text_atomic


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate models and predictions."""


@eval_group.command("bfcl")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="BFCL data dir: BFCL_v4_<category>.json files and possible_answer/ beside them.",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help='JSON lines {"id": ..., "result": ...}; result is a decoded call list, '
    "<tool_call> text, or BFCL prompt-style text like [f(a=1)].",
)
@click.option(
    "--dot-to-underscore",
    is_flag=True,
    help="Expect '.' in function names written as '_' (function-calling models).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Write one JSON line per prediction: {"id", "valid", "error_type"}.',
)
def bfcl_cmd(data_dir: Path, predictions: Path, dot_to_underscore: bool, out: Path | None) -> None:
    """Score BFCL predictions with the BFCL-mode ToolMatch."""
    try:
        report = evaluate_file(data_dir, predictions, dot_to_underscore=dot_to_underscore)
    except (FileNotFoundError, BfclDataError) as exc:
        raise click.ClickException(str(exc)) from None
    if not report.rows:
        raise click.ClickException(f"{predictions}: no predictions in the file; nothing to score")
    for lineno, message in report.problems:
        click.echo(f"{predictions}:{lineno}: {message}", err=True)
    if out is not None:
        write_text_atomic(
            out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.rows)
        )
    click.echo(report.table())
    if report.problems:
        click.echo(
            f"{len(report.problems)} line(s) counted invalid: see the messages above", err=True
        )
