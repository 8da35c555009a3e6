"""Where the pipeline's tables live (docs: notes/layout) and DuckDB views over all of them.

Views (each with an ``iter`` column; files of iterations not built yet are simply absent):

- ``samples``: every stored sample version: the seed pool (``version`` 'seed', iter 0),
  the held-out split ('heldout', iter 0) and each D_j ('D<j>', iter j, with ``split``).
- ``datasets``: D_j rows (DATASET schema), iter j.
- ``probe``, ``verdicts``, ``expansions``: per-iteration tables of probe@j, judge@j, expand@j.
- ``eval_items``: eval@j per-item results (held-out samples and BFCL entries).
- ``train_steps``: train@j per-optimizer-step rows (j >= 1) from DVCLive's files
  (``data/iter_j/dvclive/plots/metrics/<name>.tsv``, one per metric): ``iter``, ``step`` and
  one DOUBLE column per metric, named as DVCLive names it (the trainer's log key, e.g.
  ``reward``, ``"toolmatch/tool_call_rate"``; quote names holding a slash); a metric an
  iteration did not log is NULL there.
- ``metrics``: every ``*metrics.json`` (data/seed and data/iter_j) and ``eval.json``
  flattened to (iter, stage, file, key, value, text); iter is null for seed stages.

Relative paths in queries that do not exist under the working directory resolve against
the project root (DuckDB ``file_search_path``), so ``SELECT * FROM
'data/seed/label_noise.parquet'`` works from anywhere with ``--root``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from looptool.core.tables import DATASET, EVAL_ITEMS, EXPANSIONS, PROBE, VERDICTS

_ITER_DIR = re.compile(r"^iter_(\d+)$")
_VERSION = re.compile(r"^[Dd](\d+)$")

# view name -> (file name inside data/iter_j/, Arrow schema used when no file exists yet)
ITER_TABLES: dict[str, tuple[str, pa.Schema]] = {
    "datasets": ("dataset.parquet", DATASET),
    "probe": ("probe.parquet", PROBE),
    "verdicts": ("verdicts.parquet", VERDICTS),
    "expansions": ("expansions.parquet", EXPANSIONS),
    "eval_items": ("eval_items.parquet", EVAL_ITEMS),
}
# per-step training logs: DVCLive's folder of train@j, one TSV (step, value) per metric
TRAIN_STEPS_DIR = "dvclive/plots/metrics"
VIEW_NAMES = (
    "samples", "datasets", "probe", "verdicts", "expansions", "eval_items", "train_steps",
    "metrics",
)  # fmt: skip


class VersionError(ValueError):
    """A dataset version name that does not resolve to a built table."""


@dataclass(frozen=True)
class Layout:
    """Paths of the pipeline's outputs under a project root (the shared layout contract)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Layout:
        return cls(Path(root).resolve())

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def seed_dir(self) -> Path:
        return self.data / "seed"

    @property
    def seed_samples(self) -> Path:
        return self.seed_dir / "samples.parquet"

    @property
    def heldout(self) -> Path:
        return self.seed_dir / "heldout.parquet"

    def iter_dir(self, j: int) -> Path:
        return self.data / f"iter_{j}"

    def dataset(self, j: int) -> Path:
        return self.iter_dir(j) / "dataset.parquet"

    def table(self, view: str, j: int) -> Path:
        return self.iter_dir(j) / ITER_TABLES[view][0]

    def model_dir(self, j: int) -> Path:
        return self.iter_dir(j) / "model"

    def eval_json(self, j: int) -> Path:
        return self.iter_dir(j) / "eval.json"

    def iterations(self) -> list[int]:
        """Indices j of the existing data/iter_j directories, ascending."""
        if not self.data.is_dir():
            return []
        found = (_ITER_DIR.match(p.name) for p in self.data.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def table_files(self, view: str) -> list[tuple[int, Path]]:
        """(j, path) of every built file of a per-iteration table, ascending j (anything
        at that path counts: a folder there is an unreadable table, not a missing one)."""
        return [
            (j, self.table(view, j)) for j in self.iterations() if _present(self.table(view, j))
        ]

    def versions(self) -> list[str]:
        """Names of the built dataset versions: seed, heldout, D1, D2, ..."""
        out = [
            n for n, p in (("seed", self.seed_samples), ("heldout", self.heldout)) if p.is_file()
        ]
        return out + [f"D{j}" for j, _ in self.table_files("datasets")]


def _present(path: Path) -> bool:
    """Something is at ``path`` (a file, a folder, a broken link): the pipeline wrote there."""
    return path.exists() or path.is_symlink()


@dataclass(frozen=True)
class Version:
    """A resolved dataset version: its display name, file and iteration (None for files)."""

    name: str
    path: Path
    iter: int | None


def resolve_version(layout: Layout, spec: str) -> Version:
    """``seed`` | ``heldout`` | ``D<j>`` | a parquet path -> Version; VersionError if not built."""
    s = spec.strip()
    if s.lower() in ("seed", "heldout"):
        v = Version(s.lower(), layout.seed_samples if s.lower() == "seed" else layout.heldout, 0)
    elif m := _VERSION.match(s):
        j = int(m.group(1))
        v = Version(f"D{j}", layout.dataset(j), j)
    elif s.endswith(".parquet"):
        p = Path(s) if Path(s).is_absolute() else layout.root / s
        v = Version(s, p, None)
    else:
        raise VersionError(
            f"unknown version {spec!r}: use seed, heldout, D1, D2, ... or a .parquet file"
        )
    if not v.path.is_file():
        built = ", ".join(layout.versions()) or "none"
        raise VersionError(f"{v.name}: {v.path} does not exist (built versions: {built})")
    return v


def sql_literal(path: Path | str) -> str:
    """A path (or any text) as a quoted SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def _iter_union(files: list[tuple[int, Path]], reader: str = "read_parquet") -> str:
    """One SELECT per file with a constant ``iter`` (the directory's j), unioned by name.

    A constant per file (rather than parsing ``filename``) keeps projection pushdown and
    costs nothing per row; UNION BY NAME tolerates files written with extra columns.
    """
    parts = [
        f"SELECT {j}::INTEGER AS iter, COLUMNS(lambda c: c != 'iter') "
        f"FROM {reader}({sql_literal(p)})"
        for j, p in files
    ]
    return "\nUNION ALL BY NAME\n".join(parts)


def sql_ident(name: str) -> str:
    """A name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def train_step_files(layout: Layout) -> list[tuple[int, str, Path]]:
    """(j, metric name, path) of every DVCLive per-step metric file of train@j (j >= 1)."""
    out = []
    for j in layout.iterations():
        base = layout.iter_dir(j) / TRAIN_STEPS_DIR
        if j == 0 or not base.is_dir():  # iter_0/dvclive is the warm start (SFT)
            continue
        for path in sorted(base.rglob("*.tsv")):
            out.append((j, path.relative_to(base).with_suffix("").as_posix(), path))
    return out


def _train_steps_body(layout: Layout) -> str:
    """One row per (iter, step) with a column per metric: each TSV (columns ``step`` and
    the metric's last name part) read with fixed types, unioned, then folded by step."""
    files = train_step_files(layout)
    if not files:
        return "SELECT NULL::INTEGER AS iter, NULL::BIGINT AS step WHERE false"
    names = sorted({name for _, name, _ in files})
    parts = []
    for j, name, path in files:
        leaf = name.rsplit("/", 1)[-1]
        columns = "{'step': 'BIGINT', " + sql_literal(leaf) + ": 'DOUBLE'}"
        parts.append(
            f"SELECT {j}::INTEGER AS iter, step, {sql_ident(leaf)} AS {sql_ident(name)} "
            f"FROM read_csv({sql_literal(path)}, delim = '\t', header = true, "
            f"columns = {columns})"
        )
    folded = ", ".join(f"max({sql_ident(n)}) AS {sql_ident(n)}" for n in names)
    union = "\nUNION ALL BY NAME\n".join(parts)
    return f"SELECT iter, step, {folded} FROM (\n{union}\n) GROUP BY iter, step"


# Arrow -> DuckDB type names for the schemas in looptool.core.tables.
_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}


def _empty(schema: pa.Schema) -> str:
    """A typed zero-row SELECT, so a view exists before anything is built.

    Plain SQL rather than a registered Arrow table: registering makes DuckDB import
    pandas, which would double the start-up time of every `looptool sql`.
    """
    cols = [f'NULL::{_SQL_TYPES[f.type]} AS "{f.name}"' for f in schema if f.name != "iter"]
    return f"SELECT NULL::INTEGER AS iter, {', '.join(cols)} WHERE false"


def _flatten(obj: object, prefix: str = "") -> list[tuple[str, float | None, str | None]]:
    """Nested JSON -> (dotted key, numeric value, text value) leaves."""
    if isinstance(obj, dict):
        out: list[tuple[str, float | None, str | None]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list):
        return [(prefix, None, json.dumps(obj, sort_keys=True))]
    if isinstance(obj, bool):
        return [(prefix, float(obj), None)]
    if isinstance(obj, int | float):
        return [(prefix, float(obj), None)]
    return [(prefix, None, None if obj is None else str(obj))]


METRICS_COLUMNS = (
    "iter INTEGER, stage VARCHAR, file VARCHAR, key VARCHAR, value DOUBLE, text VARCHAR"
)


def metrics_rows(layout: Layout) -> list[tuple]:
    """All metrics files flattened: (iter (null for seed), stage, file, key, value, text)."""
    files: list[tuple[int | None, Path]] = (
        [(None, p) for p in sorted(layout.seed_dir.glob("*metrics.json"))]
        if layout.seed_dir.is_dir()
        else []
    )
    for j in layout.iterations():
        d = layout.iter_dir(j)
        files += [(j, p) for p in sorted(d.glob("*metrics.json"))] + [(j, d / "eval.json")]
    rows: list[tuple] = []
    for j, path in files:
        if not _present(path):
            continue
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8 / JSON
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            leaves = [("_error", None, f"unreadable: {why}")]
        else:
            leaves = _flatten(obj)
        stage = path.stem.removesuffix("_metrics")
        if j is None:  # data/seed/metrics.json -> seed, data/seed/apis_metrics.json -> seed_apis
            stage = "seed" if stage == "metrics" else f"seed_{stage}"
        rel = str(path.relative_to(layout.root))
        rows += [(j, stage, rel, key, value, text) for key, value, text in leaves]
    return rows


class TableError(ValueError):
    """A table file DuckDB cannot read; the message names the file and what to run."""


# view -> views it is built on (created first)
_VIEW_DEPS: dict[str, tuple[str, ...]] = {"samples": ("datasets",)}


def _unreadable(
    con: duckdb.DuckDBPyConnection,
    layout: Layout,
    view: str,
    files: list[Path],
    err: Exception,
    reader: str = "read_parquet",
) -> TableError:
    """The first file of ``files`` DuckDB cannot read, as one line with the fix."""
    for path in files:
        try:
            con.execute(f"DESCRIBE SELECT * FROM {reader}({sql_literal(path)})")
        except duckdb.Error as exc:
            rel = path.relative_to(layout.root) if path.is_relative_to(layout.root) else path
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return TableError(
                f"{rel}: cannot read this table ({first}); restore it with "
                f"`dvc checkout {rel}` or rebuild it with `dvc repro`"
            )
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return TableError(f"view {view}: {first}")


def _create_view(con: duckdb.DuckDBPyConnection, layout: Layout, view: str) -> None:
    if view == "metrics":
        con.execute(f"CREATE OR REPLACE TEMP TABLE _metrics ({METRICS_COLUMNS})")
        rows = metrics_rows(layout)
        if rows:
            con.executemany("INSERT INTO _metrics VALUES (?, ?, ?, ?, ?, ?)", rows)
        con.execute("CREATE OR REPLACE VIEW metrics AS SELECT * FROM _metrics")
        return
    if view == "train_steps":
        body = _train_steps_body(layout)
        try:
            con.execute(f"CREATE OR REPLACE VIEW train_steps AS {body}")
        except duckdb.Error as exc:
            files = [p for _, _, p in train_step_files(layout)]
            raise _unreadable(con, layout, view, files, exc, "read_csv") from None
        return
    if view == "samples":
        seed = [
            (name, path)
            for name, path in (("seed", layout.seed_samples), ("heldout", layout.heldout))
            if _present(path)
        ]
        parts = [
            f"SELECT '{name}' AS version, 0::INTEGER AS iter, NULL::VARCHAR AS split, * "
            f"FROM read_parquet({sql_literal(path)})"
            for name, path in seed
        ]
        parts.append("SELECT 'D' || CAST(iter AS VARCHAR) AS version, * FROM datasets")
        files = [p for _, p in seed]
        body = "\nUNION ALL BY NAME\n".join(parts)
    else:
        built = layout.table_files(view)
        files = [p for _, p in built]
        body = _iter_union(built) if built else _empty(ITER_TABLES[view][1])
    try:
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")
    except duckdb.Error as exc:
        raise _unreadable(con, layout, view, files, exc) from None


def create_views(
    con: duckdb.DuckDBPyConnection, layout: Layout, views: Iterable[str] | None = None
) -> None:
    """(Re)create the named views (default: all) on ``con`` from the files that exist now.

    Each view is built on its own, so one unreadable file fails only the views that read
    it, with a TableError naming the file.
    """
    con.execute(f"SET file_search_path = {sql_literal(layout.root)}")
    wanted = set(VIEW_NAMES if views is None else views) & set(VIEW_NAMES)
    wanted |= {d for v in wanted for d in _VIEW_DEPS.get(v, ())}
    for view in (*ITER_TABLES, "samples", "train_steps", "metrics"):  # samples reads datasets
        if view in wanted:
            _create_view(con, layout, view)


@dataclass(frozen=True)
class SqlLimits:
    """Resource bounds of a `looptool sql` connection (DuckDB's own settings):
    ``memory_limit`` and ``max_temp_size`` (spill files) as DuckDB sizes, e.g. "2GB"."""

    memory_limit: str = "2GB"
    max_temp_size: str = "4GB"


def connect(
    root: str | Path = ".",
    threads: int | None = None,
    views: Iterable[str] | None = None,
    limits: SqlLimits | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory, locked-down DuckDB connection with views over the project at ``root``.

    Only ``views`` (default: all) are built. File access is limited to the project's data/
    (DuckDB ``allowed_directories``), extensions are neither installed nor autoloaded,
    spill files go to a private temp dir (never the working directory), and the
    configuration is locked once the views exist. Raises TableError for an unreadable file;
    a bad ``limits`` size raises duckdb.Error. Relative paths in queries (``'data/...'``)
    are allowed only when the working directory is ``root`` (DuckDB checks them against
    the working directory): `looptool sql` runs there.
    """
    layout = Layout.at(root)
    config: dict = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "temp_directory": str(Path(tempfile.gettempdir()) / f"looptool-duckdb-{os.getpid()}"),
    }
    if threads:
        config["threads"] = threads
    if limits is not None:
        config["memory_limit"] = limits.memory_limit
        config["max_temp_directory_size"] = limits.max_temp_size
    con = duckdb.connect(config=config)
    dirs = [str(layout.data) + os.sep]
    if Path.cwd().resolve() == Path(layout.root).resolve():
        # a relative path in a query is checked against the working directory as written
        # (DuckDB normalizes ".." first), then resolved against the root (file_search_path)
        dirs.append("data" + os.sep)
    allowed = ", ".join(sql_literal(d) for d in dirs)
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET enable_progress_bar = false")  # results only on the terminal
    create_views(con, layout, views)
    con.execute("SET lock_configuration = true")
    return con


def describe_views(
    con: duckdb.DuckDBPyConnection, views: Iterable[str] = VIEW_NAMES
) -> dict[str, list[tuple[str, str]]]:
    """view -> [(column, type)] for the views this module creates (built on ``con``)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for view in views:
        rows = con.execute(f"DESCRIBE {view}").fetchall()
        out[view] = [(r[0], r[1]) for r in rows]
    return out
