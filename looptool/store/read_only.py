"""`looptool sql` runs read statements only, checked by DuckDB's own parser.

Every statement of a (multi-statement) query must be a SELECT (which includes WITH, FROM
..., VALUES, DESCRIBE, SHOW and SUMMARIZE); COPY, ATTACH, INSTALL/LOAD, SET, PRAGMA,
CREATE, INSERT, EXPORT, EXPLAIN (ANALYZE runs its statement) and the rest are refused
before anything runs. The connection itself is locked down too (views.connect): file
access only under data/, no extension install or autoload, configuration locked.
"""

from __future__ import annotations

import duckdb

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


def referenced_tables(statements: list[duckdb.Statement]) -> set[str]:
    """Unqualified names of the tables and views the statements read."""
    names: set[str] = set()
    for st in statements:
        names |= duckdb.get_table_names(st.query, qualified=False)
    return names
