"""`looptool seed ...`: commands about the seed data (imports)."""

from __future__ import annotations

import json

import click

from looptool.seed.importers import FORMATS


@click.group("seed")
def seed_group() -> None:
    """Seed data: try an import file before listing it in seed.apis.imports."""


@seed_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="the file's format (auto: from its first record)",
)
@click.option("--answers", default=None, help="bfcl: the possible-answer file")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def import_cmd(file: str, fmt: str, answers: str | None, as_json: bool) -> None:
    """Dry run: parse FILE and print the tools, samples and rejects that
    seed.apis.imports would take from it (before the intent tier). Writes nothing."""
    from looptool.seed.imports import ToolImportError, preview_import

    try:
        out = preview_import(file, fmt, answers)  # type: ignore[arg-type]
    except ToolImportError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        keys = ("tools", "samples", "rejects")
        click.echo(json.dumps({k: out[k] for k in keys}, ensure_ascii=False))
    else:
        click.echo(f"{file}: format {out['format']}, {out['records']} record(s)")
        click.echo(f"tools: {len(out['tools'])}")
        for t in out["tools"]:
            click.echo(f"  {t['name']}({', '.join(t['parameters'])})")
        click.echo(f"samples: {out['samples']}")
        click.echo(f"rejects: {len(out['rejects'])}")
        for r in out["rejects"]:
            click.echo(f"  line {r['line']}: {r['reason']}")
    if not out["tools"] and not out["samples"]:
        raise click.ClickException(f"{file}: nothing could be imported")
