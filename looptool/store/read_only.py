"""`looptool sql` runs read statements only, checked by DuckDB's own parser.

Every statement of a (multi-statement) query must be a SELECT (which includes WITH, FROM
..., VALUES, DESCRIBE, SHOW and SUMMARIZE); COPY, ATTACH, INSTALL/LOAD, SET, PRAGMA,
CREATE, INSERT, EXPORT, EXPLAIN (ANALYZE runs its statement) and the rest are refused
before anything runs. The connection itself is locked down too (views.connect): file
access only under data/, no extension install or autoload, configuration locked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import duckdb

T = TypeVar("T")

READ_TYPES = frozenset({duckdb.StatementType.SELECT})


class ReadOnlyError(ValueError):
    """A query with a statement that is not a read; the message names it."""


def read_statements(query: str) -> list[duckdb.Statement]:
    """The statements of ``query``, all reads; ReadOnlyError names the first that is not.

    A query DuckDB cannot parse raises its duckdb.ParserException unchanged.
    """
    statements = duckdb.extract_statements(query)
    if not statements:
        raise ReadOnlyError("empty query")
    for i, st in enumerate(statements, 1):
        if st.type not in READ_TYPES:
            kind = st.type.name
            where = f"statement {i} of {len(statements)}" if len(statements) > 1 else "the query"
            raise ReadOnlyError(
                f"looptool sql is read-only: {where} is {kind} ({st.query.strip()[:60]!r}); "
                "only SELECT queries run here (WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE "
                "included). Write results with --csv or --parquet."
            )
    return statements


def _parser() -> duckdb.DuckDBPyConnection:
    """A connection that can touch no file: DuckDB binds table functions (reads a file's
    schema) even to list a query's table names, so never on an open connection."""
    return duckdb.connect(config={
        "enable_external_access": False, "autoinstall_known_extensions": False,
        "autoload_known_extensions": False, "lock_configuration": True,
    })  # fmt: skip


def referenced_tables(statements: list[duckdb.Statement]) -> set[str] | None:
    """Unqualified names of the tables and views the statements read; None when DuckDB
    cannot list them without reading a file (then every view is needed)."""
    names: set[str] = set()
    con = _parser()
    try:
        for st in statements:
            names |= con.get_table_names(st.query, qualified=False)
    except duckdb.Error:
        return None
    finally:
        con.close()
    return names


class QueryStopped(Exception):
    """The query hit the wall-clock limit or was interrupted (Ctrl-C); the message says which."""


def run_bounded(con: duckdb.DuckDBPyConnection, work: Callable[[], T], timeout: float) -> T:
    """Run ``work`` (which executes on ``con``) in a worker thread; interrupt the connection
    (DuckDB's own interrupt) after ``timeout`` seconds or on Ctrl-C, raising QueryStopped.

    The main thread only waits, so Ctrl-C reaches Python at once, even while DuckDB runs.
    """
    box: dict[str, object] = {}
    # waiting on an Event, not Thread.join: a Ctrl-C inside join() marks a running thread
    # as stopped (CPython's bpo-45274 handling), and exiting then aborts inside DuckDB
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, name="looptool-sql", daemon=True)
    deadline = time.monotonic() + timeout
    stopped = None
    thread.start()
    try:
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                stopped = (
                    f"query stopped after {timeout:g} s (--timeout); narrow it or raise --timeout"
                )
                break
            done.wait(min(left, 0.25))
    except KeyboardInterrupt:
        stopped = "query interrupted (Ctrl-C)"
    if stopped is not None:
        end = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < end:
            con.interrupt()  # again until it lands: a query not yet started ignores it
            done.wait(0.1)
        raise QueryStopped(stopped)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
