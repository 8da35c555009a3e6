"""`looptool seed ...`: commands about the seed data (imports)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from looptool.core.terminal import SafeClickException, echo, printable
from looptool.seed.importers import FORMATS
from looptool.store.output_guard import FORCE_OPTION, OutputFile


@click.group("seed")
def seed_group() -> None:
    """Seed data: try an import file before listing it in seed.apis.imports."""


@seed_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="the file's format (auto: from its first record)",
)
@click.option("--answers", default=None, help="bfcl: the possible-answer file")
@click.option("--mcp", "mcp_cmd", metavar='"CMD ARGS"', default=None,
              help="start this local stdio MCP server and import its tools/list")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="--mcp: seconds for the server to start and list its tools")  # fmt: skip
@click.option("--save", type=OutputFile(), default=None,
              help="--mcp: write the tools/list result here (a file for seed.apis.imports); "
                   "checked before the server starts")  # fmt: skip
@FORCE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def import_cmd(
    file: str | None, fmt: str, answers: str | None, mcp_cmd: str | None, timeout: float,
    save: str | None, force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Dry run: parse FILE and print the tools, samples and rejects that
    seed.apis.imports would take from it (before the intent tier). Writes nothing.

    With --mcp "CMD ARGS" (instead of FILE) it starts a local MCP server over stdio,
    lists its tools and shows what importing them gives; --save FILE keeps the
    tools/list result as a file to put in data/tools/ and list in seed.apis.imports.
    """
    from looptool.seed.import_preview import ImportPreview
    from looptool.seed.imports import ToolImportError

    if (file is None) == (mcp_cmd is None):
        raise click.UsageError('give either FILE or --mcp "CMD ARGS"')
    if save is not None and mcp_cmd is None:
        raise click.UsageError("--save needs --mcp")
    shown = f"MCP server {mcp_cmd!r}" if mcp_cmd is not None else file
    with tempfile.TemporaryDirectory(prefix="looptool-mcp-") as tmp:
        if mcp_cmd is not None:
            file, fmt = _mcp_file(mcp_cmd, timeout, save, force, Path(tmp)), "mcp"
        try:
            preview = ImportPreview(file, fmt, answers)  # type: ignore[arg-type]
        except ToolImportError as exc:
            raise SafeClickException(str(exc)) from None
    with preview:  # the tools and rejects are read back from disk as they are printed
        if as_json:
            _print_json(preview)
        else:
            echo(f"{shown}: format {preview.format}, {preview.records} record(s)")
            echo(f"tools: {preview.n_tools}")
            for t in preview.tools():
                echo(f"  {t['name']}({', '.join(t['parameters'])})")
            echo(f"samples: {preview.samples}")
            echo(f"rejects: {preview.n_rejects}")
            for r in preview.rejects():
                echo(f"  line {r['line']}: {r['reason']}")
            if save is not None:
                echo(f"tools/list result written to {save}")
    if not preview.n_tools and not preview.samples:
        raise SafeClickException(f"{shown}: nothing could be imported")


def _print_json(preview) -> None:
    """{"tools": [...], "samples": N, "rejects": [...]} on one line, as json.dumps writes
    it, printed piece by piece (the lists are never held whole)."""

    def out(text: str) -> None:
        click.echo(printable(text, json=True), nl=False)

    def items(rows) -> None:
        for k, row in enumerate(rows):
            out((", " if k else "") + json.dumps(row, ensure_ascii=False))

    out('{"tools": [')
    items(preview.tools())
    out(f'], "samples": {json.dumps(preview.samples)}, "rejects": [')
    items(preview.rejects())
    out("]}\n")


def _mcp_file(command: str, timeout: float, save: str | None, force: bool, tmp: Path) -> str:
    """List the server's tools; write the result to ``save`` (guarded) or a temp file."""
    from looptool.seed.mcp_client import McpError, list_server_tools
    from looptool.store.io import write_json_atomic

    try:
        result = list_server_tools(command, timeout)
    except McpError as exc:
        raise click.ClickException(str(exc)) from None
    path = Path(save) if save is not None else tmp / "mcp_tools_list.json"
    write_json_atomic(path, result)
    return str(path)
