"""The numbers behind `looptool report`: DuckDB queries over the `looptool sql` views.

Every figure of the report comes from one query here, over the same views (and metrics
files) that `looptool status` and `looptool sql` read, so a number on the page can be
checked with a one-line `looptool sql` query. ``compare/compare.csv`` (written by
`looptool compare`) adds the other arms (static baseline, ablations) to the eval charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from looptool.eval.heldout import NOT_SCORED
from looptool.eval.interval import wilson_interval
from looptool.store.views import Layout, connect, sql_literal

COMPARE_CSV = Path("compare/compare.csv")
COMPARE_REQUIRED = ("arm", "iteration", "heldout_exact")
# per-step training columns (DVCLive's metric names) shown first, when the trainer logged them
TRAIN_FIRST = ("reward", "frac_reward_zero_std", "toolmatch/tool_call_rate",
               "toolmatch/reward_call", "toolmatch/reward_clarify", "toolmatch/reward_irrelevant",
               "toolmatch/match_rate", "toolmatch/parse_failure_rate", "loss")  # fmt: skip
# per-iteration training summary keys of train_metrics.json, when present
TRAIN_SUMMARY = ("reward_mean", "reward_mean_first", "reward_mean_last",
                 "zero_variance_group_share", "tool_call_rate", "match_rate",
                 "parse_failure_rate", "steps")  # fmt: skip


class ReportInputError(ValueError):
    """An input file the report cannot use; the message names the file and what is wrong."""


@dataclass
class ReportData:
    """One polars frame per figure; an empty frame means that output is not built yet."""

    root: Path
    heldout: pl.DataFrame  # iter, n, accuracy, ci_low, ci_high, tool_call_rate
    bfcl: pl.DataFrame  # iter, category, accuracy, n
    arms: pl.DataFrame  # compare.csv rows (empty when absent)
    train_steps: pl.DataFrame  # iter, step, <a column per DVCLive metric of train@j>
    train_summary: pl.DataFrame  # iter, key, value
    composition: pl.DataFrame  # iter, split, n
    mastery: pl.DataFrame  # iter, n, mastered, mastery_rate, hppl, hppl_threshold
    ppl: pl.DataFrame  # iter, mastered, ppl
    verdicts: pl.DataFrame  # iter, tier, verdict, n
    judge_calls: pl.DataFrame  # iter, llm_calls_made, llm_calls_avoided, order_disagreements
    corrections: pl.DataFrame  # iter, sample_id, tier, label_before, label_after (examples)
    correction_counts: pl.DataFrame  # iter, n (every LABEL_WRONG relabel)
    noise: pl.DataFrame  # iter, key, value (judge label_correction.*; empty without noise)
    edde: pl.DataFrame  # iter, scenario, generated, accepted, acceptance
    rejects: pl.DataFrame  # iter, reject_tier, reject_reason, n
    seed_kinds: pl.DataFrame  # version (seed | heldout), kind, n
    seed_domains: pl.DataFrame  # domain, apis
    seed_tools: pl.DataFrame  # tool, calls (labels of the seed pool)
    seed_diversity: dict[str, float | int | None]
    from_metrics: tuple[str, ...] = ()  # figures drawn from metrics JSON (tables absent)


def _q(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return con.sql(sql).pl()


def _metric_wide(con: duckdb.DuckDBPyConnection, stage: str, keys: tuple[str, ...]) -> pl.DataFrame:
    """iter + one column per metrics key of ``stage`` (keys absent everywhere are left out)."""
    in_list = ", ".join(sql_literal(k) for k in keys)
    long = _q(con, f"SELECT iter, key, value FROM metrics WHERE stage = {sql_literal(stage)} "
                   f"AND key IN ({in_list}) AND value IS NOT NULL ORDER BY iter")  # fmt: skip
    if long.is_empty():
        return pl.DataFrame(schema={"iter": pl.Int32})
    wide = long.pivot(on="key", index="iter", values="value")
    return wide.select("iter", *[k for k in keys if k in wide.columns]).sort("iter")


def arms_from_elsewhere(heldout: pl.DataFrame, arms: pl.DataFrame) -> str | None:
    """Why compare.csv's arms may not be this run's: its warm start (iteration 0) scored
    otherwise than this run's eval@0 (accuracy or n), e.g. a compare.csv left from other
    params. None when they agree or either side has no iteration 0."""
    if heldout.is_empty() or arms.is_empty() or "n" not in arms.columns:
        return None
    own = heldout.filter(pl.col("iter") == 0)
    theirs = arms.filter(pl.col("iteration") == 0).head(1)
    if own.is_empty() or theirs.is_empty():
        return None
    acc, n = own["accuracy"][0], own["n"][0]
    t_acc, t_n = theirs["heldout_exact"][0], theirs["n"][0]
    if t_n == n and t_acc is not None and acc is not None and abs(t_acc - acc) < 1e-9:
        return None
    return (
        f"compare.csv's warm start scored {t_acc:.3f} on {t_n:.0f} held-out items, this run's "
        f"{acc:.3f} on {n}: its arms come from another run or other params (run `looptool "
        "compare` again to compare with this one)"
    )


def read_compare(path: Path, arms: tuple[str, ...] = ()) -> pl.DataFrame:
    """Rows of a `looptool compare` CSV, optionally only the named arms; empty if absent."""
    if not path.is_file():
        if arms:
            raise ReportInputError(f"{path}: not found (needed for --exp {' '.join(arms)})")
        return pl.DataFrame()
    try:
        df = pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ReportInputError(f"{path}: unreadable CSV: {first}") from None
    missing = [c for c in COMPARE_REQUIRED if c not in df.columns]
    if missing:
        raise ReportInputError(f"{path}: missing column(s) {', '.join(missing)}")
    numeric = [c for c in ("iteration", "heldout_exact", "ci_low", "ci_high", "tool_call_rate",
                           "bfcl_accuracy", "n") if c in df.columns]  # fmt: skip
    try:
        df = df.with_columns(pl.col("arm").cast(pl.String), *[
            pl.col(c).cast(pl.Float64, strict=True) for c in numeric])  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise ReportInputError(
            f"{path}: non-numeric value in {', '.join(numeric)}: {exc}"
        ) from None
    if arms:
        unknown = sorted(set(arms) - set(df["arm"].to_list()))
        if unknown:
            raise ReportInputError(f"{path}: no arm named {', '.join(unknown)}")
        df = df.filter(pl.col("arm").is_in(list(arms)))
    return df.sort("arm", "iteration")


def _heldout(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    acc = _metric_wide(con, "eval", ("heldout.accuracy", "heldout.n"))
    not_scored = ", ".join(sql_literal(r) for r in (*NOT_SCORED, "engine_error"))
    calls = _q(con, f"""
        SELECT iter, avg((coalesce(raw_text, '') LIKE '%<tool_call>%')::INT) AS tool_call_rate
        FROM eval_items WHERE suite = 'heldout' AND reason NOT IN ({not_scored})
        GROUP BY iter""")  # fmt: skip
    if not {"heldout.accuracy", "heldout.n"} <= set(acc.columns):
        return pl.DataFrame(schema={"iter": pl.Int32, "n": pl.Int64, "accuracy": pl.Float64,
                                    "ci_low": pl.Float64, "ci_high": pl.Float64,
                                    "tool_call_rate": pl.Float64})  # fmt: skip
    acc = acc.rename({"heldout.accuracy": "accuracy", "heldout.n": "n"}).with_columns(
        pl.col("n").cast(pl.Int64)
    )
    ci = [
        wilson_interval(round(a * n), n) if n else (None, None)
        for a, n in zip(acc["accuracy"], acc["n"], strict=True)
    ]
    return (
        acc.with_columns(
            ci_low=pl.Series([c[0] for c in ci], dtype=pl.Float64),
            ci_high=pl.Series([c[1] for c in ci], dtype=pl.Float64),
        )
        .join(calls, on="iter", how="left")
        .select("iter", "n", "accuracy", "ci_low", "ci_high", "tool_call_rate")
        .sort("iter")
    )


def _seed_diversity(con: duckdb.DuckDBPyConnection) -> dict[str, float | int | None]:
    row = con.sql("""
        WITH s AS (
          SELECT sample_id, dialogue_id, tools,
                 json_extract_string(tools, '$[*].name') AS offered,
                 json_extract_string(label, '$.calls[*].name') AS called
          FROM samples WHERE version = 'seed'),
        calls AS (SELECT unnest(called) AS name FROM s),
        freq AS (SELECT name, count(*) AS c FROM calls GROUP BY name)
        SELECT (SELECT count(*) FROM s) AS samples,
               (SELECT count(DISTINCT dialogue_id) FROM s) AS dialogues,
               (SELECT count(DISTINCT o) FROM (SELECT unnest(offered) AS o FROM s)) AS tools_offered,
               (SELECT count(*) FROM freq) AS tools_called,
               (SELECT count(DISTINCT tools) FROM s) AS distinct_tool_sets,
               (SELECT avg(len(offered)) FROM s) AS tools_per_sample,
               (SELECT -sum(c / t * log2(c / t)) FROM freq, (SELECT sum(c) AS t FROM freq))
                 AS call_name_entropy_bits
        """).fetchall()[0]  # fmt: skip
    keys = ("samples", "dialogues", "tools_offered", "tools_called", "distinct_tool_sets",
            "tools_per_sample", "call_name_entropy_bits")  # fmt: skip
    out = dict(zip(keys, row, strict=True))
    called, ent = out["tools_called"], out["call_name_entropy_bits"]
    # entropy relative to a uniform spread over the tools that were called at least once
    out["call_name_entropy_norm"] = (
        ent / math.log2(called) if called and called > 1 and ent else None
    )
    return out


# figure -> query over the views (see looptool.store.views)
QUERIES: dict[str, str] = {
    "bfcl": """
            SELECT iter, split_part(key, '.', 2) AS category,
                   max(value) FILTER (WHERE key LIKE '%.accuracy') AS accuracy,
                   max(value) FILTER (WHERE key LIKE '%.n')::BIGINT AS n
            FROM metrics WHERE stage = 'eval' AND key LIKE 'bfcl.%'
              AND (key LIKE '%.accuracy' OR key LIKE '%.n')
            GROUP BY ALL HAVING accuracy IS NOT NULL ORDER BY iter, category""",
    "composition": """
            SELECT iter, coalesce(split, '?') AS split, count(*)::BIGINT AS n
            FROM datasets GROUP BY ALL ORDER BY iter, split""",
    "verdicts": """
            SELECT iter, tier, verdict, count(*)::BIGINT AS n FROM verdicts
            GROUP BY ALL ORDER BY iter, tier, verdict""",
    "corrections": """
            SELECT iter, sample_id, tier, label_before, label_after FROM verdicts
            WHERE verdict = 'LABEL_WRONG'
            QUALIFY row_number() OVER (PARTITION BY iter ORDER BY sample_id) <= 3
            ORDER BY iter, sample_id""",
    "correction_counts": """
            SELECT iter, count(*)::BIGINT AS n FROM verdicts WHERE verdict = 'LABEL_WRONG'
            GROUP BY iter ORDER BY iter""",
    "noise": """
            SELECT iter, replace(key, 'label_correction.', '') AS key, value FROM metrics
            WHERE stage = 'judge' AND key LIKE 'label_correction.%' ORDER BY iter, key""",
    "edde": """
            SELECT iter, scenario, count(*)::BIGINT AS generated,
                   sum(accepted::INT)::BIGINT AS accepted, avg(accepted::INT) AS acceptance
            FROM expansions GROUP BY ALL ORDER BY iter, scenario""",
    "rejects": """
            SELECT iter, coalesce(reject_tier, '?') AS reject_tier,
                   coalesce(reject_reason, '?') AS reject_reason, count(*)::BIGINT AS n
            FROM expansions WHERE NOT accepted GROUP BY ALL ORDER BY iter, n DESC, reject_reason""",
    "seed_kinds": """
            SELECT version, kind, count(*)::BIGINT AS n FROM samples
            WHERE version IN ('seed', 'heldout') GROUP BY ALL ORDER BY version DESC, kind""",
    "seed_domains": """
            SELECT replace(key, 'apis_by_domain.', '') AS domain, value::BIGINT AS apis
            FROM metrics WHERE stage = 'seed_apis' AND key LIKE 'apis_by_domain.%'
            ORDER BY apis DESC, domain""",
    "seed_tools": """
            SELECT name AS tool, count(*)::BIGINT AS calls FROM (
              SELECT unnest(json_extract_string(label, '$.calls[*].name')) AS name
              FROM samples WHERE version = 'seed')
            GROUP BY ALL ORDER BY calls DESC, tool""",
}


# figure -> the same columns from the stages' metrics JSON, used for iterations whose
# parquet table is absent (a checkout with the git-tracked metrics but without `dvc pull`)
METRICS_FALLBACK: dict[str, str] = {
    "composition": """
        WITH m AS (SELECT * FROM metrics WHERE stage IN ('init', 'compose'))
        SELECT it.value::INTEGER AS iter, replace(m.key, 'splits.', '') AS split,
               m.value::BIGINT AS n
        FROM m JOIN m AS it ON it.file = m.file AND it.key = 'iteration'
        WHERE m.key LIKE 'splits.%' ORDER BY iter, split""",
    "mastery": """
        SELECT iter, max(value) FILTER (WHERE key = 'n')::BIGINT AS n,
               max(value) FILTER (WHERE key = 'mastered')::BIGINT AS mastered,
               max(value) FILTER (WHERE key = 'mastery_rate') AS mastery_rate,
               max(value) FILTER (WHERE key = 'hppl')::BIGINT AS hppl,
               max(value) FILTER (WHERE key = 'hppl_threshold') AS hppl_threshold
        FROM metrics WHERE stage = 'probe' GROUP BY iter HAVING n IS NOT NULL ORDER BY iter""",
    "verdicts": """
        SELECT iter, split_part(key, '.', 2) AS tier, split_part(key, '.', 3) AS verdict,
               value::BIGINT AS n
        FROM metrics WHERE stage = 'judge' AND key LIKE 'verdicts_per_tier.%.%'
        ORDER BY iter, tier, verdict""",
    "correction_counts": """
        SELECT iter, value::BIGINT AS n FROM metrics
        WHERE stage = 'judge' AND key = 'verdicts.LABEL_WRONG' AND value > 0 ORDER BY iter""",
    "edde": """
        SELECT iter, split_part(key, '.', 2) AS scenario,
               max(value) FILTER (WHERE key LIKE '%.generated')::BIGINT AS generated,
               max(value) FILTER (WHERE key LIKE '%.accepted')::BIGINT AS accepted,
               accepted / generated AS acceptance
        FROM metrics WHERE stage = 'expand' AND key LIKE 'per_scenario.%'
        GROUP BY ALL ORDER BY iter, scenario""",
    # the stage writes its top reasons as "<tier>: <reason>"
    "rejects": """
        SELECT iter, CASE WHEN contains(r, ': ') THEN split_part(r, ': ', 1) ELSE '?' END
                 AS reject_tier, r AS reject_reason, n
        FROM (SELECT iter, replace(key, 'top_reject_reasons.', '') AS r, value::BIGINT AS n
              FROM metrics WHERE stage = 'expand' AND key LIKE 'top_reject_reasons.%')
        ORDER BY iter, n DESC, reject_reason""",
}


def collect_report_data(root: str | Path = ".", compare_csv: Path | None = None,
                        arms: tuple[str, ...] = ()) -> ReportData:  # fmt: skip
    """Query every figure of the report from the project at ``root``."""
    layout = Layout.at(root)
    con = connect(layout.root)
    csv = compare_csv if compare_csv is not None else layout.root / COMPARE_CSV
    train_steps = _q(con, "SELECT * FROM train_steps ORDER BY iter, step")
    train_steps = train_steps.select(
        [c for c, t in train_steps.schema.items() if c in ("iter", "step") or t.is_numeric()]
    )
    train_summary = _q(con, f"""
        SELECT iter, key, value FROM metrics WHERE stage = 'train' AND value IS NOT NULL
        AND key IN ({", ".join(sql_literal(k) for k in TRAIN_SUMMARY)}) ORDER BY iter, key""")  # fmt: skip
    figures = {k: _q(con, sql) for k, sql in QUERIES.items()}
    figures["mastery"] = _q(con, """
        SELECT iter, count(*)::BIGINT AS n, sum(match::INT)::BIGINT AS mastered,
               avg(match::INT) AS mastery_rate, sum(hppl::INT)::BIGINT AS hppl
        FROM probe GROUP BY iter ORDER BY iter""").join(
        _metric_wide(con, "probe", ("hppl_threshold",)), on="iter", how="left")  # fmt: skip
    from_metrics = []
    for k, sql in METRICS_FALLBACK.items():  # per iteration: tables first
        have = figures[k]["iter"].unique().implode()
        alt = _q(con, sql).filter(~pl.col("iter").is_in(have))
        if not alt.is_empty():
            # diagonal: a key no metrics file holds (hppl_threshold) is a column of nulls
            figures[k] = pl.concat([figures[k], alt], how="diagonal_relaxed").sort(
                "iter", maintain_order=True
            )
            from_metrics.append(k)
    return ReportData(
        **figures,
        root=layout.root,
        heldout=_heldout(con),
        arms=read_compare(csv, arms),
        train_steps=train_steps,
        train_summary=train_summary,
        ppl=_q(con, "SELECT iter, match AS mastered, ppl FROM probe WHERE ppl IS NOT NULL"),
        judge_calls=_metric_wide(
            con, "judge", ("llm_calls_made", "llm_calls_avoided", "order_disagreements")
        ),
        seed_diversity=_seed_diversity(con),
        from_metrics=tuple(from_metrics),
    )
