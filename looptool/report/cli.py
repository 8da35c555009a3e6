"""`looptool report`: the command line of the run's HTML report (looptool.report.page)."""

from __future__ import annotations

from pathlib import Path

import click

from looptool.core.terminal import SafeClickException, first_line
from looptool.store.cli import ROOT_OPTION, click_error
from looptool.store.output_guard import FORCE_OPTION, OutputFile


@click.command("report", short_help="One self-contained HTML page of the run (charts inline).")
@ROOT_OPTION
@click.option("--out", type=OutputFile(), default="report.html", show_default=True,
              help="Output HTML file (written atomically; --force replaces one).")  # fmt: skip
@click.option("--exp", "arms", multiple=True, metavar="NAME",
              help="Overlay only this arm of compare/compare.csv (repeatable; default: all).")  # fmt: skip
@click.option("--compare", "compare_csv", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Arms CSV of `looptool compare` [default: ROOT/compare/compare.csv].")  # fmt: skip
@FORCE_OPTION
def report(
    root: Path, out: Path, arms: tuple[str, ...], compare_csv: Path | None, force: bool
) -> None:
    """Write one HTML page with the run's curves and distributions, viewable offline.

    Sections: eval per iteration (held-out exact match with 95% intervals, tool-call
    rate, BFCL per category; arms of `looptool compare` overlaid), training curves per
    step, D_j composition / mastery / PPL, JGLV verdicts and label corrections, EDDE
    acceptance and rejects, seed figures. Charts are inline SVG: no script, font or
    network is needed to view the file. Prints the path written.
    """
    import duckdb
    import polars as pl

    from looptool.report.data import ReportInputError
    from looptool.report.page import write_report
    from looptool.store.views import TableError

    try:
        path = write_report(out, root=root, compare_csv=compare_csv, arms=arms)
    except (ReportInputError, TableError) as exc:  # one line naming the file
        raise click_error(exc) from None
    except (duckdb.Error, pl.exceptions.PolarsError, OSError) as exc:
        raise SafeClickException(f"report failed: {first_line(exc)}") from None
    click.echo(str(path.resolve()))
