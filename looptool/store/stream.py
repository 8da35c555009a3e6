"""Tables written row by row in batches, so memory stays flat in the table's size.

:func:`parquet_rows_atomic` writes a parquet file (atomically, as
:func:`looptool.store.io.write_parquet_atomic` does) from rows added one at a time;
:class:`Spool` keeps rows on disk (an anonymous temp file, Arrow IPC) until they are read
back in order. Rows are dicts of a fixed schema (missing nullable columns become null, as
:func:`looptool.core.tables.rows_to_table` does).

Rows are buffered as Python dicts up to :data:`BATCH_ROWS` rows or about
:data:`BATCH_BYTES` of text, then kept as one Arrow record batch; a parquet row group
is written once the kept batches hold :data:`ROW_GROUP_BYTES`. The boundaries depend on
the rows only, so reruns write byte-identical files, and a table that fits in one row
group is byte for byte what ``write_parquet_atomic`` writes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from looptool.store.io import atomic_path

BATCH_ROWS = 1024
BATCH_BYTES = 4 << 20
ROW_GROUP_BYTES = 32 << 20


class _Batcher:
    """Rows -> record batches of ``schema`` -> ``_write(table)`` in row-group-sized parts."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0  # rows added so far
        self._buf: list[dict] = []
        self._buf_bytes = 0
        self._kept: list[pa.RecordBatch] = []
        self._kept_bytes = 0

    def add(self, row: dict) -> None:
        self._buf.append(row)
        self.rows += 1
        self._buf_bytes += sum(len(v) for v in row.values() if isinstance(v, str | bytes))
        if len(self._buf) >= BATCH_ROWS or self._buf_bytes >= BATCH_BYTES:
            self._batch()

    def add_rows(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.add(row)

    def add_batches(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self._batch()
            self._keep(batch)
            self.rows += batch.num_rows

    def _batch(self) -> None:
        if self._buf:
            rows, self._buf, self._buf_bytes = self._buf, [], 0
            self._keep(pa.RecordBatch.from_pylist(rows, schema=self.schema))

    def _keep(self, batch: pa.RecordBatch) -> None:
        self._kept.append(batch)
        self._kept_bytes += batch.nbytes
        if self._kept_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._batch()
        if self._kept:
            kept, self._kept, self._kept_bytes = self._kept, [], 0
            self._write(pa.Table.from_batches(kept, schema=self.schema))

    def _write(self, table: pa.Table) -> None:
        raise NotImplementedError


class ParquetRows(_Batcher):
    """A parquet file written from rows as they come (zstd, schema stored, no timestamps)."""

    def __init__(self, path: str | os.PathLike, schema: pa.Schema) -> None:
        super().__init__(schema)
        self._writer = pq.ParquetWriter(path, schema, compression="zstd", store_schema=True)
        self._written = False

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self._written = True

    def close(self) -> None:
        self._flush()
        if not self._written:  # as pq.write_table writes an empty table: one empty group
            self._writer.write_table(self.schema.empty_table())
        self._writer.close()

    def abort(self) -> None:
        self._writer.close()


@contextmanager
def parquet_rows_atomic(path: str | os.PathLike, schema: pa.Schema) -> Iterator[ParquetRows]:
    """Yield a :class:`ParquetRows` writing a temp file beside ``path``; it replaces
    ``path`` only when the block ends without an error."""
    with atomic_path(path) as tmp:
        out = ParquetRows(tmp, schema)
        try:
            yield out
        except BaseException:
            out.abort()
            raise
        out.close()


class Spool(_Batcher):
    """Rows kept on disk until read back (:meth:`batches`, :meth:`iter_rows`), in order.

    The file is an anonymous temp file (gone when closed or when the process ends)."""

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(schema)
        self._fh = tempfile.TemporaryFile(prefix="looptool-spool-")  # noqa: SIM115 (close())
        opts = pa.ipc.IpcWriteOptions(compression="zstd")
        self._writer: Any = pa.ipc.new_stream(pa.PythonFile(self._fh, mode="w"), schema,
                                              options=opts)  # fmt: skip

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows added, as record batches (adding ends here)."""
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
        self._fh.seek(0)
        yield from pa.ipc.open_stream(pa.PythonFile(self._fh, mode="r"))

    def iter_rows(self) -> Iterator[dict]:
        for batch in self.batches():
            yield from batch.to_pylist()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
