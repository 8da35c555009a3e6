"""Sample-level diff between two dataset versions (seed, heldout, D1, D2, ... or a parquet file).

Per ``sample_id`` (which survives relabeling, DESIGN §2):
- added / removed: present in only one version;
- relabeled: in both, different ``label_hash`` (old -> new label shown in examples);
- split moved: in both, different ``split`` (only when both versions carry a split);
- unchanged: in both, same label and split (relabeled and split moved may overlap).
A sample listed several times in one version (e.g. the es_repeat ablation) counts once,
with its splits joined as ``A+B`` and its highest ``label_rev`` label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from looptool.store.views import Layout, Version, resolve_version, sql_literal

CATEGORIES = ("added", "removed", "relabeled", "split_moved")


@dataclass
class VersionDiff:
    a: Version
    b: Version
    counts: dict[str, int]
    split_moves: pl.DataFrame  # from_split, to_split, n
    added_by: pl.DataFrame  # split, origin, n
    removed_by: pl.DataFrame  # split, origin, n
    examples: dict[str, pl.DataFrame] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "a": {"name": self.a.name, "path": str(self.a.path)},
            "b": {"name": self.b.name, "path": str(self.b.path)},
            "counts": self.counts,
            "split_moves": self.split_moves.to_dicts(),
            "added_by": self.added_by.to_dicts(),
            "removed_by": self.removed_by.to_dicts(),
            "examples": {k: v.to_dicts() for k, v in self.examples.items()},
        }


# column -> (SQL type, per-sample aggregate over the rows of one sample_id)
_COLUMNS: dict[str, tuple[str, str]] = {
    "label_hash": ("VARCHAR", "arg_max(label_hash, label_rev)"),
    "label_rev": ("INTEGER", "max(label_rev)"),
    "split": ("VARCHAR", "string_agg(DISTINCT split, '+' ORDER BY split)"),
    "origin": ("VARCHAR", "arg_max(origin, label_rev)"),
    "kind": ("VARCHAR", "arg_max(kind, label_rev)"),
    "parent_id": ("VARCHAR", "arg_max(parent_id, label_rev)"),
    "born_iter": ("INTEGER", "min(born_iter)"),
}


def _per_sample_sql(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, set[str]]:
    """SQL for one row per sample_id of ``path``; also the file's column names."""
    src = f"read_parquet({sql_literal(path)})"
    try:
        names = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    except duckdb.Error as exc:
        raise ValueError(f"{path}: cannot read as parquet: {exc}") from None
    missing = [c for c in ("sample_id", "label_hash") if c not in names]
    if missing:
        raise ValueError(f"{path}: not a sample table (missing columns {missing})")
    # absent optional columns are null; label_rev 0 keeps arg_max well-defined
    cols = ["sample_id"] + [
        c if c in names else f"{'0' if c == 'label_rev' else 'NULL'}::{t} AS {c}"
        for c, (t, _) in _COLUMNS.items()
    ]
    aggs = ", ".join(f"{agg} AS {c}" for c, (_, agg) in _COLUMNS.items())
    plain = ", ".join(_COLUMNS)
    # Only repeated ids need the (costly) per-group aggregates; the rest pass through.
    sql = f"""
        WITH src AS (SELECT {", ".join(cols)} FROM {src}),
        dup AS (SELECT sample_id FROM src GROUP BY sample_id HAVING count(*) > 1)
        SELECT sample_id, 1::BIGINT AS n_rows, {plain} FROM src ANTI JOIN dup USING (sample_id)
        UNION ALL
        SELECT sample_id, count(*) AS n_rows, {aggs}
        FROM src SEMI JOIN dup USING (sample_id) GROUP BY sample_id
    """
    return sql, names


def diff_versions(
    a: Version | str, b: Version | str, root: str | Path = ".", examples: int = 5
) -> VersionDiff:
    """Diff version ``a`` -> ``b``; ``examples`` rows per category (sorted by sample_id).

    Runs in DuckDB: the per-sample join is materialized inside DuckDB, and only the
    counts, breakdowns and example rows come back to Python.
    """
    layout = Layout.at(root)
    va = a if isinstance(a, Version) else resolve_version(layout, a)
    vb = b if isinstance(b, Version) else resolve_version(layout, b)
    con = duckdb.connect()
    sa, names_a = _per_sample_sql(con, va.path)
    sb, names_b = _per_sample_sql(con, vb.path)
    both_split = "split" in names_a and "split" in names_b
    moved = "a.split IS DISTINCT FROM b.split" if both_split else "false"
    con.execute(f"""
        CREATE TEMP TABLE j AS
        SELECT coalesce(a.sample_id, b.sample_id) AS sample_id,
               a.n_rows AS n_a, b.n_rows AS n_b,
               a.label_hash AS hash_a, b.label_hash AS hash_b,
               a.label_rev AS rev_a, b.label_rev AS rev_b,
               a.split AS split_a, b.split AS split_b,
               a.origin AS origin_a, b.origin AS origin_b,
               a.parent_id AS parent_a, b.parent_id AS parent_b,
               a.born_iter AS born_a, b.born_iter AS born_b,
               a.sample_id IS NULL AS added, b.sample_id IS NULL AS removed,
               coalesce(a.label_hash <> b.label_hash, false) AS relabeled,
               a.sample_id IS NOT NULL AND b.sample_id IS NOT NULL AND {moved} AS split_moved
        FROM ({sa}) a FULL OUTER JOIN ({sb}) b ON a.sample_id = b.sample_id
    """)  # fmt: skip
    row = con.sql("""
        SELECT coalesce(sum(n_a), 0)::BIGINT, coalesce(sum(n_b), 0)::BIGINT,
               count(n_a)::BIGINT, count(n_b)::BIGINT,
               count_if(added)::BIGINT, count_if(removed)::BIGINT,
               count_if(relabeled)::BIGINT, count_if(split_moved)::BIGINT,
               count_if(NOT added AND NOT removed AND NOT relabeled AND NOT split_moved)::BIGINT
        FROM j
    """).fetchall()[0]  # fmt: skip
    keys = ("rows_a", "rows_b", "samples_a", "samples_b", "added", "removed", "relabeled",
            "split_moved", "unchanged")  # fmt: skip
    counts = dict(zip(keys, (int(x) for x in row), strict=True))
    counts["common"] = counts["samples_a"] - counts["removed"]

    split_moves = con.sql("""
        SELECT split_a AS from_split, split_b AS to_split, count(*)::BIGINT AS n
        FROM j WHERE split_moved GROUP BY ALL ORDER BY n DESC, from_split, to_split
    """).pl()  # fmt: skip

    def by(flag: str, side: str) -> pl.DataFrame:
        return con.sql(f"""
            SELECT split_{side} AS split, origin_{side} AS origin, count(*)::BIGINT AS n
            FROM j WHERE {flag} GROUP BY ALL ORDER BY n DESC, split NULLS LAST, origin NULLS LAST
        """).pl()  # fmt: skip

    out = VersionDiff(va, vb, counts, split_moves, by("added", "b"), by("removed", "a"))
    if examples > 0:
        out.examples = _examples(con, (va, names_a), (vb, names_b), int(examples))
    con.close()
    return out


def _examples(
    con: duckdb.DuckDBPyConnection,
    a: tuple[Version, set[str]],
    b: tuple[Version, set[str]],
    n: int,
) -> dict[str, pl.DataFrame]:
    def q(cols: str, flag: str) -> pl.DataFrame:
        return con.sql(f"SELECT {cols} FROM j WHERE {flag} ORDER BY sample_id LIMIT {n}").pl()

    ex = {
        "added": q("sample_id, split_b AS split, origin_b AS origin, parent_b AS parent_id, "
                   "born_b AS born_iter", "added"),
        "removed": q("sample_id, split_a AS split, origin_a AS origin, parent_a AS parent_id, "
                     "born_a AS born_iter", "removed"),
        "split_moved": q("sample_id, split_a AS from_split, split_b AS to_split", "split_moved"),
    }  # fmt: skip
    rel = q(
        "sample_id, hash_a AS old_hash, hash_b AS new_hash, rev_a AS old_rev, rev_b AS new_rev",
        "relabeled",
    )
    ids = rel["sample_id"].to_list()

    def labels(side: tuple[Version, set[str]], name: str) -> pl.DataFrame:
        version, names = side
        if "label" not in names:
            return pl.DataFrame(
                {"sample_id": ids, name: [None] * len(ids)},
                schema={"sample_id": pl.String, name: pl.String},
            )
        pick = "arg_max(label, label_rev)" if "label_rev" in names else "any_value(label)"
        # only the few example ids: the label column is the widest one in the file
        return con.sql(
            f"SELECT sample_id, {pick} AS {name} "
            f"FROM read_parquet({sql_literal(version.path)}) WHERE list_contains($ids, sample_id) "
            "GROUP BY sample_id",
            params={"ids": ids},
        ).pl()

    if ids:
        rel = rel.join(labels(a, "old_label"), on="sample_id", how="left")
        rel = rel.join(labels(b, "new_label"), on="sample_id", how="left")
    else:
        rel = rel.with_columns(old_label=pl.lit(None, pl.String), new_label=pl.lit(None, pl.String))
    ex["relabeled"] = rel.sort("sample_id")
    return ex


def format_diff(d: VersionDiff) -> str:
    """Human-readable report: counts, split-move matrix, breakdowns, examples."""
    c = d.counts
    lines = [
        f"diff {d.a.name} -> {d.b.name}",
        f"  {d.a.path}",
        f"  {d.b.path}",
        "",
        f"{'':14}{d.a.name:>12}{d.b.name:>12}",
        f"{'rows':14}{c['rows_a']:>12,}{c['rows_b']:>12,}",
        f"{'samples':14}{c['samples_a']:>12,}{c['samples_b']:>12,}",
        "",
    ]
    lines += [
        f"{k:14}{c[k]:>12,}" for k in ("added", "removed", "relabeled", "split_moved", "unchanged")
    ]
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=-1,
                   tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=240):  # fmt: skip
        for title, df in (
            ("split moves (from -> to)", d.split_moves),
            ("added by split/origin", d.added_by),
            ("removed by split/origin", d.removed_by),
        ):
            if df.height:
                lines += ["", title, str(df)]
        for cat in CATEGORIES:
            df = d.examples.get(cat)
            if df is not None and df.height:
                lines += ["", f"examples: {cat}", str(df)]
    return "\n".join(lines)
