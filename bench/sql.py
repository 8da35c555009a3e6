"""Benchmark: `looptool sql` aggregates over a synthetic 10M-row verdict table (target < 1 s).

Writes (not timed) N verdict rows spread over data/iter_1..K/verdicts.parquet (VERDICTS
columns, realistic value mixes) plus matching probe tables, then times, through the
same code path as the CLI (store.views.connect + the query): a GROUP BY over all
verdicts, a filtered aggregate, and a verdicts x probe join. Also times the whole
`looptool sql` command as a subprocess (Python start-up and imports included).

    .venv/bin/python -m bench.sql [--rows 10000000] [--iters 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from looptool.store.views import connect

QUERIES = {
    "verdict counts per iter": (
        "SELECT iter, verdict, count(*)::BIGINT AS n FROM verdicts GROUP BY ALL ORDER BY ALL"
    ),
    "LABEL_WRONG by tier/outcome": (
        "SELECT tier, outcome, count(*)::BIGINT AS n FROM verdicts "
        "WHERE verdict = 'LABEL_WRONG' GROUP BY ALL ORDER BY ALL"
    ),
    "verdicts x probe mean ppl": (
        "SELECT v.verdict, avg(p.ppl) AS ppl, count(*)::BIGINT AS n "
        "FROM verdicts v JOIN probe p USING (iter, sample_id) GROUP BY ALL ORDER BY ALL"
    ),
}


def write_tables(root: Path, rows: int, iters: int) -> None:
    """N verdict rows (and as many probe rows) over ``iters`` iteration directories."""
    con = duckdb.connect()
    per = rows // iters
    for j in range(1, iters + 1):
        d = root / "data" / f"iter_{j}"
        d.mkdir(parents=True, exist_ok=True)
        base = f"SELECT i, {j}::INTEGER AS iter, 's' || lpad(i::VARCHAR, 9, '0') AS sample_id, (hash(i, {j}) % 1000000007)::BIGINT AS h FROM range({per}) t(i)"
        con.execute(f"""
            COPY (
              SELECT sample_id, iter,
                ['PRED_WRONG','PRED_WRONG','BOTH_CORRECT','LABEL_WRONG','BOTH_WRONG','UNPARSED'][1 + h % 6] AS verdict,
                ['equiv','rules','llm'][1 + (h >> 8) % 3] AS tier,
                'synthetic reason ' || (h % 50)::VARCHAR AS reason,
                NULL::VARCHAR AS analysis, NULL::VARCHAR AS correct_approach,
                'judge-model' AS judge_model, 'label_first' AS response_order,
                NULL::VARCHAR AS raw_judge,
                '{{"calls":[{{"arguments":{{"city":"x"}},"name":"f"}}]}}' AS label_before,
                NULL::VARCHAR AS label_after, NULL::VARCHAR AS label_hash_after,
                NULL::VARCHAR AS kind_after,
                ((h >> 16) % 1000) / 100.0 AS ppl,
                ['MR','MR','HPPL','LR','DROPPED','MR'][1 + h % 6] AS outcome
              FROM ({base})
            ) TO '{d / "verdicts.parquet"}' (FORMAT parquet, COMPRESSION zstd)
        """)  # fmt: skip
        con.execute(f"""
            COPY (
              SELECT sample_id, iter, 'single' AS kind, '<tool_call>..</tool_call>' AS raw_text,
                NULL::VARCHAR AS think,
                NULL::VARCHAR AS prediction, NULL::VARCHAR AS parse_error, h % 3 = 0 AS match,
                'value_mismatch' AS match_reason, 1.0 + ((h >> 16) % 1000) / 100.0 AS ppl,
                20::INTEGER AS n_tokens, h % 7 = 0 AS hppl
              FROM ({base})
            ) TO '{d / "probe.parquet"}' (FORMAT parquet, COMPRESSION zstd)
        """)  # fmt: skip
    con.close()


def _time(fn, repeat: int) -> tuple[float, float]:
    """(first run, best of the rest) wall seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times[1:] or times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="keep the synthetic tables here")
    args = ap.parse_args(argv)

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_sql_"))
    try:
        t = time.perf_counter()
        write_tables(root, args.rows, args.iters)
        print(f"wrote {args.rows:,} verdict + probe rows over {args.iters} iterations "
              f"in {time.perf_counter() - t:.1f} s ({root})")  # fmt: skip
        total = connect(root).sql("SELECT count(*) FROM verdicts").fetchall()[0][0]
        assert total == args.rows // args.iters * args.iters, total

        print(
            f"\n{'query (connect + run, in process)':<40}{'first s':>10}{'best s':>10}{'target':>9}"
        )
        for name, q in QUERIES.items():
            first, best = _time(lambda q=q: connect(root).sql(q).pl(), args.repeat)
            target = "< 1 s" if name == "verdict counts per iter" else ""
            ok = "" if not target else (" ok" if best < 1.0 else " SLOW")
            print(f"{name:<40}{first:>10.3f}{best:>10.3f}{target:>9}{ok}")

        exe = Path(sys.executable).with_name("looptool")
        cmd = [str(exe), "sql", QUERIES["verdict counts per iter"], "--root", str(root)]
        first, best = _time(
            lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat
        )
        print(f"{'`looptool sql` CLI, whole process':<40}{first:>10.3f}{best:>10.3f}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
