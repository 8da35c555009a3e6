"""A sample's history across iterations: splits, probe results, verdicts, label
revisions, its EDDE ancestors and descendants. Reads the DuckDB views of store.views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from looptool.store.views import connect

_MAX_DEPTH = 64  # guards the recursive walks against a (corrupt) parent cycle

_TIMELINE_SQL = """
WITH d AS (
    SELECT iter, string_agg(DISTINCT split, '+' ORDER BY split) AS split,
           max(label_rev) AS label_rev, arg_max(label_hash, label_rev) AS label_hash,
           count(*)::BIGINT AS copies
    FROM datasets WHERE sample_id = $id GROUP BY iter),
p AS (
    SELECT iter, any_value(match) AS match, any_value(match_reason) AS match_reason,
           any_value(ppl) AS ppl, any_value(hppl) AS hppl
    FROM probe WHERE sample_id = $id GROUP BY iter),
v AS (
    SELECT iter, any_value(verdict) AS verdict, any_value(tier) AS tier,
           any_value(outcome) AS outcome, bool_or(label_after IS NOT NULL) AS relabeled
    FROM verdicts WHERE sample_id = $id GROUP BY iter),
c AS (
    SELECT iter, count(*)::BIGINT AS children, count_if(accepted)::BIGINT AS children_accepted
    FROM expansions WHERE parent_id = $id GROUP BY iter),
i AS (SELECT iter FROM d UNION SELECT iter FROM p UNION SELECT iter FROM v UNION SELECT iter FROM c)
SELECT i.iter, d.split, d.copies, d.label_rev, d.label_hash, p.match, p.match_reason, p.ppl,
       p.hppl, v.verdict, v.tier, v.outcome, v.relabeled,
       coalesce(c.children, 0) AS children, coalesce(c.children_accepted, 0) AS children_accepted
FROM i LEFT JOIN d USING (iter) LEFT JOIN p USING (iter) LEFT JOIN v USING (iter)
LEFT JOIN c USING (iter)
ORDER BY i.iter
"""

_LABELS_SQL = """
SELECT label_rev, label_hash, any_value(label) AS label, min(iter) AS first_iter,
       max(iter) AS last_iter, string_agg(DISTINCT version, ',' ORDER BY version) AS versions
FROM samples WHERE sample_id = $id
GROUP BY label_rev, label_hash ORDER BY first_iter, label_rev
"""

_EDGES = """
edges AS (
    SELECT DISTINCT sample_id AS child, parent_id AS parent FROM (
        SELECT sample_id, parent_id FROM samples
        UNION ALL SELECT sample_id, parent_id FROM expansions WHERE accepted)
    WHERE parent_id IS NOT NULL)
"""

_ANCESTORS_SQL = f"""
WITH RECURSIVE {_EDGES},
up(sample_id, depth) AS (
    SELECT parent, 1 FROM edges WHERE child = $id
    UNION
    SELECT e.parent, up.depth + 1 FROM up JOIN edges e ON e.child = up.sample_id
    WHERE up.depth < {_MAX_DEPTH})
SELECT sample_id, min(depth) AS depth FROM up GROUP BY sample_id ORDER BY depth
"""

_DESCENDANTS_SQL = f"""
WITH RECURSIVE {_EDGES},
down(sample_id, parent_id, depth) AS (
    SELECT child, parent, 1 FROM edges WHERE parent = $id
    UNION
    SELECT e.child, e.parent, down.depth + 1 FROM down JOIN edges e ON e.parent = down.sample_id
    WHERE down.depth < {_MAX_DEPTH})
SELECT sample_id, any_value(parent_id) AS parent_id, min(depth) AS depth
FROM down GROUP BY sample_id ORDER BY depth, sample_id
"""

# Every EDDE attempt on the sample (accepted or rejected, with the reason).
_CHILDREN_SQL = """
SELECT iter, sample_id AS child_id, scenario, accepted, reject_tier, reject_reason
FROM expansions WHERE parent_id = $id ORDER BY iter, accepted DESC, child_id
"""

_SELF_SQL = """
SELECT version, iter, origin, born_iter, parent_id, dialogue_id, step, kind
FROM samples WHERE sample_id = $id ORDER BY iter, version LIMIT 1
"""

_EXPANDED_FROM_SQL = """
SELECT iter, parent_id, scenario, accepted, reject_reason
FROM expansions WHERE sample_id = $id ORDER BY iter LIMIT 1
"""

_ID_TABLES = ("samples", "probe", "verdicts", "expansions")


class LineageError(LookupError):
    """The id is unknown or an ambiguous prefix."""


@dataclass
class Lineage:
    sample_id: str
    first_seen: dict | None  # the earliest stored row: version, iter, origin, parent, dialogue
    expanded_from: dict | None  # the EDDE attempt that created it (iter, parent, scenario)
    timeline: pl.DataFrame  # one row per iteration it appears in
    labels: pl.DataFrame  # label revisions (rev, hash, label, first/last iter, versions)
    ancestors: pl.DataFrame  # sample_id, depth (1 = parent)
    children: pl.DataFrame  # every EDDE attempt from this sample
    descendants: pl.DataFrame  # accepted EDDE offspring, recursively

    def to_json(self) -> dict:
        return {
            "sample_id": self.sample_id,
            "first_seen": self.first_seen,
            "expanded_from": self.expanded_from,
            **{
                k: getattr(self, k).to_dicts()
                for k in ("timeline", "labels", "ancestors", "children", "descendants")
            },
        }


def _resolve_id(con: duckdb.DuckDBPyConnection, sid: str) -> str:
    """Exact id, or a unique prefix (>= 4 chars) of one."""
    union = " UNION ".join(f"SELECT sample_id FROM {t}" for t in _ID_TABLES)
    if con.sql(
        f"SELECT 1 FROM ({union}) WHERE sample_id = $id LIMIT 1", params={"id": sid}
    ).fetchall():
        return sid
    if len(sid) >= 4:
        hits = con.sql(
            f"SELECT DISTINCT sample_id FROM ({union}) WHERE starts_with(sample_id, $p) "
            "ORDER BY 1 LIMIT 6",
            params={"p": sid},
        ).fetchall()
        if len(hits) == 1:
            return hits[0][0]
        if hits:
            shown = ", ".join(h[0] for h in hits[:5])
            raise LineageError(f"sample id prefix {sid!r} is ambiguous: {shown}, ...")
    raise LineageError(f"sample {sid!r} not found in samples, probe, verdicts or expansions")


def _one(con: duckdb.DuckDBPyConnection, sql: str, sid: str) -> dict | None:
    df = con.sql(sql, params={"id": sid}).pl()
    return df.row(0, named=True) if df.height else None


def lineage(
    sample_id: str, root: str | Path = ".", con: duckdb.DuckDBPyConnection | None = None
) -> Lineage:
    """Collect the history of ``sample_id`` (or a unique prefix of it)."""
    con = con or connect(root)
    sid = _resolve_id(con, sample_id.strip())

    def q(sql: str) -> pl.DataFrame:
        return con.sql(sql, params={"id": sid}).pl()

    return Lineage(
        sample_id=sid,
        first_seen=_one(con, _SELF_SQL, sid),
        expanded_from=_one(con, _EXPANDED_FROM_SQL, sid),
        timeline=q(_TIMELINE_SQL),
        labels=q(_LABELS_SQL),
        ancestors=q(_ANCESTORS_SQL),
        children=q(_CHILDREN_SQL),
        descendants=q(_DESCENDANTS_SQL),
    )


def format_lineage(lin: Lineage) -> str:
    lines = [f"sample {lin.sample_id}"]
    if lin.first_seen:
        f = lin.first_seen
        lines.append(
            f"  first seen in {f['version']} (iter {f['iter']}), origin {f['origin']}, "
            f"born iter {f['born_iter']}, kind {f['kind']}"
            + (f", dialogue {f['dialogue_id']} step {f['step']}" if f["dialogue_id"] else "")
        )
    if lin.expanded_from:
        e = lin.expanded_from
        state = "accepted" if e["accepted"] else f"rejected ({e['reject_reason']})"
        lines.append(
            f"  EDDE child of {e['parent_id']} at iter {e['iter']}, scenario {e['scenario']}, {state}"
        )
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=-1,
                   tbl_cols=-1, fmt_str_lengths=100, tbl_width_chars=240):  # fmt: skip
        for title, df in (
            ("timeline", lin.timeline),
            ("label revisions", lin.labels),
            ("ancestors", lin.ancestors),
            ("EDDE attempts from this sample", lin.children),
            ("descendants (accepted EDDE offspring)", lin.descendants),
        ):
            lines += ["", title, str(df) if df.height else "  (none)"]
    return "\n".join(lines)
