"""How varied D_seed is, and how close its held-out samples are to its training samples.

:func:`seed_diversity` (the ``diversity`` block of data/seed/metrics.json, shown by
``looptool status``):

- ``functions``: distinct function names offered in the samples' tool lists and called
  in labels; ``tools_per_sample``: mean size of a sample's tool list.
- ``kind_share``: share of samples per kind.
- ``user_messages``: distinct user messages (one per dialogue position), their distinct
  three-word ``openings``, and ``distinct_2`` / ``distinct_3``: distinct word n-grams /
  all word n-grams over those messages (higher = less repetitive).
- ``chain_share``: of the multi_step samples (a call after earlier results), the share
  whose label takes an argument value from an earlier tool result that no user message
  states (the value flows from a result, it was not dictated).
- ``near_duplicate_share``: of the held-out call samples, the share with a training
  sample that calls the same functions (same sorted set of names) and whose request
  wording (:func:`masked_request`: the last user message, argument values masked) has a
  word-set Jaccard similarity >= 0.8 with the held-out one. Values are masked because a
  fresh value in the same sentence template is still the same request;
  ``heldout_mean_best_jaccard`` is the mean of each held-out sample's best similarity
  (0 when no training sample calls the same functions).

- ``edde_near_duplicate_share``: the same question under EDDE's own rule
  (:mod:`looptool.core.near_dup`, the rule that keeps EDDE children out of the held-out
  split): of all held-out samples, the share with a training sample whose word 3-gram
  shingles of the whole conversation and label have a Jaccard similarity >=
  ``loop.expand.near_dup_threshold`` (``edde_threshold``). Values count here, so it
  answers "would EDDE call this held-out sample a copy of a training sample", while
  ``near_duplicate_share`` asks whether the generator wrote the same request twice.
"""

from __future__ import annotations

import json
import re

import duckdb
import polars as pl

from looptool.core.near_dup import rows_index, shingles
from looptool.core.tables import sample_from_row
from looptool.seed.values import appears_in, scalar_leaves

NEAR_DUP_JACCARD = 0.8
_WORDS = r"[a-z0-9]+"


def _user_messages(rows: list[dict]) -> pl.DataFrame:
    """Distinct user messages by (dialogue, position): contexts repeat earlier turns."""
    seen = {}
    for r in rows:
        for i, m in enumerate(json.loads(r["context"])):
            if m["role"] == "user":
                seen[(r["dialogue_id"] or r["sample_id"], i)] = m.get("content") or ""
    return pl.DataFrame({"content": list(seen.values())}, schema={"content": pl.String})


def _last_user(context: str) -> str:
    return next(
        (m.get("content") or "" for m in reversed(json.loads(context)) if m["role"] == "user"), ""
    )


def _signature(label: str) -> str | None:
    calls = json.loads(label).get("calls") or []
    return ",".join(sorted({c["name"] for c in calls})) or None


def _chained(row: dict) -> bool:
    """Does a label argument come from an earlier tool result, unstated by the user?"""
    context = json.loads(row["context"])
    said = "\n".join(m.get("content") or "" for m in context if m["role"] == "user")
    results = "\n".join(m.get("content") or "" for m in context if m["role"] == "tool")
    for call in json.loads(row["label"]).get("calls") or []:
        for value in call["arguments"].values():
            leaves = [x for x in scalar_leaves(value) if isinstance(x, str)]
            if leaves and all(appears_in(x, results) and not appears_in(x, said) for x in leaves):
                return True
    return False


def _distinct_n(con: duckdb.DuckDBPyConnection, n: int) -> float | None:
    distinct, total = con.execute(
        f"""
        WITH m AS (SELECT regexp_extract_all(lower(content), '{_WORDS}') AS t FROM msgs),
        s AS (SELECT t, unnest(range(1, len(t) - {n} + 2)) AS i FROM m WHERE len(t) >= {n})
        SELECT count(DISTINCT array_to_string(t[i:i + {n - 1}], ' '))::BIGINT,
               count(*)::BIGINT
        FROM s
        """
    ).fetchone()
    return round(distinct / total, 4) if total else None


def near_duplicates(train: pl.DataFrame, heldout: pl.DataFrame) -> tuple[int, int, float | None]:
    """(held-out call samples with a near-duplicate in training, held-out call samples,
    mean of each one's best Jaccard similarity); frames with columns ``sig`` (function
    signature) and ``text`` (masked request)."""
    con = duckdb.connect()
    con.register("tr", train.filter(pl.col("sig").is_not_null()))
    con.register("ho", heldout.filter(pl.col("sig").is_not_null()).with_row_index("hid"))
    dup, total, mean = con.execute(
        f"""
        WITH t AS (SELECT sig, list_distinct(regexp_extract_all(lower(text), '{_WORDS}')) AS w
                   FROM tr),
        h AS (SELECT hid, sig, list_distinct(regexp_extract_all(lower(text), '{_WORDS}')) AS w
              FROM ho),
        best AS (
          SELECT h.hid,
                 max(len(list_intersect(h.w, t.w))
                     / greatest(len(list_distinct(list_concat(h.w, t.w))), 1)) AS j
          FROM h LEFT JOIN t ON h.sig = t.sig GROUP BY h.hid)
        SELECT count_if(j >= {NEAR_DUP_JACCARD})::BIGINT, count(*)::BIGINT,
               avg(coalesce(j, 0)) FROM best
        """
    ).fetchone()
    con.close()
    return dup, total, None if mean is None else round(mean, 4)


def masked_request(row: dict) -> str:
    """The last user message with the argument values of the sample's calls (label and
    context) replaced by ``v`` and other numbers by ``0``: the request's wording."""
    context = json.loads(row["context"])
    calls = [c for m in context for c in m.get("tool_calls") or []]
    calls += json.loads(row["label"]).get("calls") or []
    values = {
        str(x)
        for c in calls
        for v in c["arguments"].values()
        for x in scalar_leaves(v)
        if isinstance(x, str) and x.strip()
    }
    text = _last_user(row["context"])
    for v in sorted(values, key=len, reverse=True):
        text = re.sub(re.escape(v), " v ", text, flags=re.IGNORECASE)
    return re.sub(r"\d+(?:\.\d+)?", "0", text)


def edde_near_duplicates(train: list[dict], heldout: list[dict], threshold: float) -> int:
    """Held-out samples with a training sample at shingle Jaccard >= ``threshold``."""
    index = rows_index(train, threshold, "training")
    return sum(index.most_similar(shingles(sample_from_row(r))) is not None for r in heldout)


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sig": [_signature(r["label"]) for r in rows],
            "text": [masked_request(r) for r in rows],
        },
        schema={"sig": pl.String, "text": pl.String},
    )


def seed_diversity(train: list[dict], heldout: list[dict], edde_threshold: float) -> dict:
    """The diversity block of the seed metrics (see module doc); SAMPLES rows in;
    ``edde_threshold`` is ``loop.expand.near_dup_threshold``."""
    rows = train + heldout
    if not rows:
        return {}
    offered = {t["name"] for r in rows for t in json.loads(r["tools"])}
    called = {c for r in rows for c in (_signature(r["label"]) or "").split(",") if c}
    kinds = pl.DataFrame({"kind": [r["kind"] for r in rows]}).group_by("kind").len().sort("kind")
    msgs = _user_messages(rows)
    con = duckdb.connect()
    con.register("msgs", msgs)
    openings = con.execute(
        f"""SELECT count(DISTINCT array_to_string(
                regexp_extract_all(lower(content), '{_WORDS}')[1:3], ' '))::BIGINT FROM msgs"""
    ).fetchone()[0]
    d2, d3 = _distinct_n(con, 2), _distinct_n(con, 3)
    con.close()
    multi = [r for r in rows if r["kind"] == "multi_step"]
    chained = sum(_chained(r) for r in multi)
    dup, held_calls, mean_j = near_duplicates(_frame(train), _frame(heldout))
    edde_dup = edde_near_duplicates(train, heldout, edde_threshold) if heldout else 0
    return {
        "functions": {"offered": len(offered), "called": len(called)},
        "tools_per_sample": round(sum(len(json.loads(r["tools"])) for r in rows) / len(rows), 3),
        "kind_share": {k: round(n / len(rows), 4) for k, n in kinds.iter_rows()},
        "user_messages": {
            "distinct": msgs.height,
            "openings": int(openings),
            "distinct_2": d2,
            "distinct_3": d3,
        },
        "chain_share": round(chained / len(multi), 4) if multi else None,
        "multi_step_chained": chained,
        "near_duplicate_share": round(dup / held_calls, 4) if held_calls else None,
        "heldout_near_duplicates": dup,
        "heldout_call_samples": held_calls,
        "heldout_mean_best_jaccard": mean_j,
        "edde_near_duplicate_share": round(edde_dup / len(heldout), 4) if heldout else None,
        "heldout_edde_near_duplicates": edde_dup,
        "edde_threshold": edde_threshold,
    }
