"""Version tools on the command line: status, diff, sql, lineage, export.

Each command reads the pipeline's parquet tables under ``--root`` (default: the current
directory) and never writes into data/.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from looptool.core.terminal import SafeClickException, echo, first_line, printable
from looptool.store.output_guard import FORCE_OPTION, OutputFile, OutputFileOrDir


def _project_root(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """--root must be a LoopTool project: a folder with data/, params.yaml or dvc.yaml."""
    if not value.is_dir():
        raise click.BadParameter(f"{value}: no such folder", ctx, param)
    if not any((value / n).exists() for n in ("data", "params.yaml", "dvc.yaml")):
        raise click.BadParameter(
            f"{value}: not a LoopTool project (no data/, params.yaml or dvc.yaml there)",
            ctx, param,
        )  # fmt: skip
    return value


ROOT_OPTION = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    callback=_project_root,
    is_eager=True,  # known when an output relative to the root is checked (compare --out)
    help="Project root (the directory holding data/, params.yaml, dvc.yaml).",
)


def click_error(exc: Exception) -> click.ClickException:
    """One error line; it may quote data (a file name, a cell), so it is printed escaped."""
    return SafeClickException(str(exc))


def _json(obj: object) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)


@click.command("status", short_help="Iterations built, dataset sizes per split, stale stages.")
@ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--no-dvc", is_flag=True, help="Skip `dvc status` (staleness) and report files only.")
@click.option("--wide", is_flag=True, help="One column per stage (the default fits 100 columns).")
def status(root: Path, as_json: bool, no_dvc: bool, wide: bool) -> None:
    """Iterations built, dataset sizes per split, eval headline, and stale DVC stages.

    Marks under `tpjxce` (train probe judge expand compose eval; one column each with
    --wide) say whether each stage's output of iteration j exists (compose@j writes
    D_{j+1}). Staleness comes from `dvc status`; outside a DVC
    repository it is reported as unknown.
    """
    from looptool.store.status import collect_status, format_status

    try:
        st = collect_status(root, check_dvc=not no_dvc)
    except Exception as exc:  # duckdb/arrow read errors name the file
        raise click_error(exc) from None
    echo(_json(st.to_json()) if as_json else format_status(st, wide=wide), json=as_json)


@click.command("diff", short_help="Sample-level diff between two dataset versions.")
@click.argument("a")
@click.argument("b")
@ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
@click.option("--examples", "-n", default=5, show_default=True, type=click.IntRange(min=0),
              help="Example rows per category (added, removed, relabeled, split_moved).")  # fmt: skip
def diff(a: str, b: str, root: Path, as_json: bool, examples: int) -> None:
    """Sample-level diff between dataset versions A and B.

    A and B are `seed` (data/seed/samples.parquet), `heldout`, `D<j>`
    (data/iter_<j>/dataset.parquet) or a parquet path. Reports samples added, removed,
    relabeled (same sample_id, new label_hash; old -> new label in the examples) and
    split moves (e.g. HPPL -> ES), with counts and examples. A sample can be both
    relabeled and moved; `unchanged` counts samples with neither.

    Example: looptool diff D2 D3 --examples 3
    """
    from looptool.store.diff import diff_versions, format_diff

    try:
        d = diff_versions(a, b, root=root, examples=examples)
    except (ValueError, OSError) as exc:
        raise click_error(exc) from None
    echo(_json(d.to_json()) if as_json else format_diff(d), json=as_json)


@click.command("sql", short_help="Read-only DuckDB SQL over every iteration's tables.")
@click.argument("query", required=False)
@ROOT_OPTION
@click.option("--csv", "csv_out", type=OutputFile(),
              help="Write the full result to this CSV file.")  # fmt: skip
@click.option("--parquet", "parquet_out", type=OutputFile(),
              help="Write the full result to this parquet file.")  # fmt: skip
@FORCE_OPTION
@click.option("--max-rows", default=40, show_default=True, type=click.IntRange(min=1),
              help="Rows printed to the terminal.")  # fmt: skip
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Stop the query after this many seconds.")  # fmt: skip
@click.option("--memory-limit", default="2GB", show_default=True,
              help="DuckDB memory_limit: beyond it the query spills to temp files or fails.")  # fmt: skip
@click.option("--max-temp-size", default="4GB", show_default=True,
              help="DuckDB max_temp_directory_size: the most spill files a query may write.")  # fmt: skip
def sql(
    query: str | None,
    root: Path,
    csv_out: Path | None,
    parquet_out: Path | None,
    force: bool,
    max_rows: int,
    timeout: float,
    memory_limit: str,
    max_temp_size: str,
) -> None:
    """Run a read-only DuckDB query over all iterations' tables; without QUERY, list the views.

    Only SELECT statements run (WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE included);
    files are readable only under ROOT/data/. Results go to the terminal or, with --csv /
    --parquet, to a new file (--force replaces one; files DVC tracks are never written).
    A query runs at most --timeout seconds within --memory-limit and --max-temp-size;
    Ctrl-C stops it.

    \b
    Views (every one has an `iter` column):
      samples     every sample version: seed pool, heldout and each D_j (`version`)
      datasets    D_j rows with `split` (ES | EE | HPPL | SEED_NEW | SEED)
      probe       probe@j: prediction, match, ppl, hppl
      verdicts    judge@j: verdict, tier, outcome, label_before/after
      expansions  expand@j: EDDE children, scenario, accepted, reject reason
      eval_items  eval@j: per held-out sample / BFCL entry: ok, reason, raw_text
      train_steps train@j: a row per optimizer step, a column per DVCLive metric
                  (reward, "toolmatch/tool_call_rate", ...; data/iter_j/dvclive)
      metrics     every metrics json flattened: iter, stage, key, value, text

    \b
    Examples:
      looptool sql "SELECT iter, split, count(*) n FROM datasets GROUP BY ALL ORDER BY ALL"
      looptool sql "SELECT iter, verdict, count(*) n FROM verdicts GROUP BY ALL ORDER BY ALL"
      looptool sql "SELECT * FROM metrics WHERE stage = 'eval'" --csv eval.csv
    """
    import duckdb

    from looptool.store.io import atomic_path, write_parquet_atomic
    from looptool.store.output_guard import OutputPathError
    from looptool.store.read_only import (
        QueryStopped,
        ReadOnlyError,
        read_statements,
        referenced_tables,
        run_bounded,
    )
    from looptool.store.views import VIEW_NAMES, SqlLimits, TableError, connect, describe_views

    root = root.resolve()
    limits = SqlLimits(memory_limit=memory_limit, max_temp_size=max_temp_size)
    for flag, setting, value in (("--memory-limit", "memory_limit", memory_limit),
                                 ("--max-temp-size", "max_temp_directory_size", max_temp_size)):  # fmt: skip
        try:
            duckdb.connect(config={setting: value}).close()
        except duckdb.Error as exc:
            raise SafeClickException(f"{flag} {value!r}: {first_line(exc)}") from None
    if not query:
        for view in VIEW_NAMES:
            try:
                cols = describe_views(connect(root, views=[view]), [view])[view]
            except TableError as exc:
                echo(f"{view}: unavailable: {exc}")
                continue
            click.echo(f"{view}: " + ", ".join(f"{c} {t}" for c, t in cols))
        return
    writing = bool(csv_out or parquet_out)
    try:
        statements = read_statements(query)
        if csv_out is not None and csv_out == parquet_out:
            raise OutputPathError(f"{csv_out}: given to both --csv and --parquet")
        tables = referenced_tables(statements)
        with _working_dir(root):  # a relative 'data/...' in the query means ROOT/data/
            con = connect(root, views=None if tables is None else tables & set(VIEW_NAMES),
                          limits=limits)  # fmt: skip

            def work():
                rel = con.sql(query)
                if (
                    rel is None
                ):  # unreachable for SELECTs; kept so a surprise never prints a traceback
                    raise ReadOnlyError("the query returned no result")
                return rel.to_arrow_table() if writing else rel.limit(max_rows + 1).pl()

            result = run_bounded(con, work, timeout)
        if writing:
            import pyarrow.csv as pacsv

            if parquet_out:
                write_parquet_atomic(parquet_out, result)
            if csv_out:
                with atomic_path(csv_out) as tmp:
                    pacsv.write_csv(result, tmp)
            click.echo(
                f"{result.num_rows:,} rows written to "
                + ", ".join(str(p) for p in (csv_out, parquet_out) if p)
            )
            return
        df = result
    except (ReadOnlyError, OutputPathError, TableError, QueryStopped) as exc:
        raise click_error(exc) from None
    except duckdb.Error as exc:
        msg = first_line(exc)
        if "Out of Memory" in msg or "max_temp_directory_size" in msg:
            msg += " (raise --memory-limit / --max-temp-size, or narrow the query)"
        raise SafeClickException(f"query failed: {msg}") from None
    echo(format_frame(_printable_frame(df.head(max_rows))))
    if df.height > max_rows:
        click.echo(f"(first {max_rows} rows shown; use --max-rows, --csv or --parquet for more)")


def _printable_frame(df):
    """Text cells and column names with control characters escaped (before the table is
    laid out, so its columns stay aligned)."""
    import polars as pl

    df = df.rename({c: printable(c) for c in df.columns})
    return df.with_columns(
        pl.col(c).map_elements(printable, return_dtype=pl.String)
        for c, t in df.schema.items()
        if t == pl.String
    )


@contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def format_frame(df) -> str:
    import polars as pl

    with pl.Config(tbl_hide_dataframe_shape=True, tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60,
                   tbl_width_chars=max(100, _term_width())):  # fmt: skip
        return str(df)


def _term_width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 40)).columns if sys.stdout.isatty() else 200


@click.command("lineage", short_help="One sample's history across iterations.")
@click.argument("sample_id")
@ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def lineage(sample_id: str, root: Path, as_json: bool) -> None:
    """History of one sample across iterations (a unique id prefix is enough).

    Shows where it came from (seed dialogue or EDDE parent), its split in each D_j,
    probe results, judge verdicts and outcome, label revisions, and its EDDE children
    (accepted or rejected with the reason) and further descendants.
    """
    from looptool.store.lineage import LineageError, format_lineage
    from looptool.store.lineage import lineage as get_lineage
    from looptool.store.views import TableError

    try:
        lin = get_lineage(sample_id, root=root)
    except (LineageError, TableError) as exc:
        raise click_error(exc) from None
    echo(_json(lin.to_json()) if as_json else format_lineage(lin), json=as_json)


@click.command("export", short_help="Export a dataset version: openai | sharegpt | parquet | hf.")
@click.argument("version")
@ROOT_OPTION
@click.option("--format", "fmt", type=click.Choice(["openai", "sharegpt", "parquet", "hf"]), required=True,
              help="openai: JSONL chat fine-tuning records; sharegpt: LLaMA-Factory JSONL; "
                   "parquet: rows + messages/completion columns; hf: a folder "
                   "datasets.load_dataset() loads, with a dataset card.",
              is_eager=True)  # fmt: skip
@click.option("--out", type=OutputFileOrDir(lambda ctx: ctx.params.get("fmt") == "hf"),
              required=True, help="Output file (a folder for hf), written atomically.")  # fmt: skip
@click.option(
    "--date", default=None, help="Date in the system prompt (default: params.yaml project.date)."
)
@click.option("--arguments", type=click.Choice(["string", "object"]), default="string", show_default=True,
              help="openai format: call arguments as JSON strings (OpenAI spec) or objects.")  # fmt: skip
@click.option("--push", "push_to", metavar="OWNER/NAME", default=None,
              help="hf format: then upload the folder to this Hub dataset repository.")  # fmt: skip
@click.option("--private", is_flag=True, help="--push: create the repository private.")
@FORCE_OPTION
def export(
    version: str, root: Path, fmt: str, out: Path, date: str | None, arguments: str,
    push_to: str | None, private: bool, force: bool,
) -> None:  # fmt: skip
    """Export a dataset version (seed, heldout, D<j> or a parquet file) for training elsewhere.

    Prompts use the policy's system prompt and tool list exactly as training does;
    the label becomes the assistant turn (tool_calls, or text for a no-call label).
    --out must be a new file (--force replaces one) and never a file DVC tracks.

    --format hf writes a folder: one parquet file per D_j split (a config each, plus
    `all`), prompt / completion / tools columns for TRL, and README.md, a dataset card
    (counts, provenance, label corrections, git commit and dvc.lock hash). --push
    OWNER/NAME uploads it with huggingface_hub (needs `hf auth login` and network).

    Examples: looptool export D3 --format openai --out d3.jsonl
              looptool export D3 --format hf --out d3_hf [--push me/looptool-d3]
    """
    from looptool.params import ParamsError
    from looptool.store.export import export_version
    from looptool.store.output_guard import check_not_input, guarded_dir
    from looptool.store.views import Layout, resolve_version

    if push_to and fmt != "hf":
        raise click.UsageError("--push needs --format hf")
    try:
        v = resolve_version(Layout.at(root), version)
        if fmt == "hf":
            from looptool.store.export_hf import build_hf_folder

            with guarded_dir(out) as tmp:
                files = build_hf_folder(v, tmp, root=root, date=date)
            n = sum(files.values())
        else:
            check_not_input(str(out), out, inputs=(v.path,))
            n = export_version(v, fmt, out, root=root, date=date, arguments=arguments)
    except (ValueError, OSError, ParamsError) as exc:
        raise click_error(exc) from None
    click.echo(f"{n:,} records written to {out} ({fmt})")
    if push_to:
        from looptool.store.export_hf import PushError, push_folder

        try:
            url = push_folder(out, push_to, private=private)
        except PushError as exc:
            raise click_error(exc) from None
        click.echo(f"pushed to {url}")
