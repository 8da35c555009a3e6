"""BFCL-mode ToolMatch throughput: checks per second per scored category, one process.

Each entry is checked against its first-acceptable-value output (the reference output
the tests use); answers are compiled once up front, as the evaluator does.
Target: >= 50,000 checks/s overall on one core.
"""

from __future__ import annotations

import time

from looptool.eval.bfcl.data import DEFAULT_DATA_DIR, SCORED_CATEGORIES
from looptool.eval.bfcl.single_turn import first_acceptable_output, load_bfcl

TARGET = 50_000
MIN_SECONDS = 0.5  # per category, so short categories are timed over many rounds


def main() -> None:
    data = load_bfcl(DEFAULT_DATA_DIR, SCORED_CATEGORIES)
    t0 = time.perf_counter()
    work: dict[str, list] = {c: [] for c in SCORED_CATEGORIES}
    for e in data.values():
        work[e.category].append((e.compiled(), first_acceptable_output(e)))
    compile_s = time.perf_counter() - t0
    n_entries = sum(len(w) for w in work.values())

    print(f"BFCL-mode checks ({n_entries} entries, 8 scored categories; compile {compile_s:.3f} s)")
    print(
        f"{'category':<24} {'entries':>8} {'valid':>6} {'checks':>9} {'seconds':>8} {'checks/s':>10}"
    )
    total_checks, total_s = 0, 0.0
    for cat, items in work.items():
        valid = sum(c.check(o).valid for c, o in items)
        checks, elapsed = 0, 0.0
        while elapsed < MIN_SECONDS:
            start = time.perf_counter()
            for c, o in items:
                c.check(o)
            elapsed += time.perf_counter() - start
            checks += len(items)
        total_checks += checks
        total_s += elapsed
        print(
            f"{cat:<24} {len(items):>8} {valid:>6} {checks:>9} {elapsed:>8.3f} {checks / elapsed:>10,.0f}"
        )
    # overall = one pass over every entry, weighted by category size
    start = time.perf_counter()
    rounds = 0
    while time.perf_counter() - start < 2 * MIN_SECONDS:
        for items in work.values():
            for c, o in items:
                c.check(o)
        rounds += 1
    elapsed = time.perf_counter() - start
    rate = rounds * n_entries / elapsed
    print(
        f"{'overall (all entries)':<24} {n_entries:>8} {'':>6} {rounds * n_entries:>9} {elapsed:>8.3f} {rate:>10,.0f}"
    )
    print(f"target >= {TARGET:,} checks/s: {'met' if rate >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
