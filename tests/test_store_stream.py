"""Tables written in batches (looptool.store.stream): what the streamed import writes is
what the whole-table writers wrote, row for row and, for one row group, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from looptool.core.tables import APIS, REJECTS, rows_to_table
from looptool.seed.stage_data import reject_counts, reject_summary, top_reasons, value_counts
from looptool.store import stream
from looptool.store.io import write_parquet_atomic
from looptool.store.stream import Spool, parquet_rows_atomic


def _rejects(n: int) -> list[dict]:
    reasons = ["duplicate name 'x1' (a different spec came earlier in the file)", "", "x; y 2",
               'tool#12 "abc" bad; second 3', "٣٤ digits", "é" * 200, "line\nbreak 'q\nq' 9",
               "a'b", 'open "quote 5', "💥 1", "B 1;2", "Z", "a"]  # fmt: skip
    return [
        {"stage": "s", "item_id": f"i{k}", "tier": ("import", "dedup", "rules")[k % 3],
         "reason": reasons[k * 7 % len(reasons)] + (f" {k % 4}" if k % 5 == 0 else ""),
         "payload": None if k % 4 else json.dumps({"k": k})}
        for k in range(n)
    ]  # fmt: skip


def test_one_row_group_is_byte_identical_to_write_parquet_atomic(tmp_path: Path) -> None:
    for rows in (_rejects(300), []):
        write_parquet_atomic(tmp_path / "whole.parquet", rows_to_table(rows, REJECTS))
        with parquet_rows_atomic(tmp_path / "rows.parquet", REJECTS) as out:
            out.add_rows(rows[:100])
            with Spool(REJECTS) as spool:  # batches read back from disk join as they are
                spool.add_rows(rows[100:])
                out.add_batches(spool.batches())
        assert out.rows == len(rows)
        whole = (tmp_path / "whole.parquet").read_bytes()
        assert (tmp_path / "rows.parquet").read_bytes() == whole


def test_many_row_groups_keep_rows_and_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "BATCH_ROWS", 7)
    monkeypatch.setattr(stream, "BATCH_BYTES", 300)
    monkeypatch.setattr(stream, "ROW_GROUP_BYTES", 2000)
    rows = _rejects(500)
    for name in ("a.parquet", "b.parquet"):
        with parquet_rows_atomic(tmp_path / name, REJECTS) as out:
            out.add_rows(rows)
    f = pq.ParquetFile(tmp_path / "a.parquet")
    assert f.num_row_groups > 5
    assert f.read().to_pylist() == rows_to_table(rows, REJECTS).to_pylist()
    assert f.schema_arrow == REJECTS
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    with Spool(REJECTS) as spool:
        spool.add_rows(rows)
        assert list(spool.iter_rows()) == rows


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    write_parquet_atomic(target, rows_to_table(_rejects(3), REJECTS))
    before = target.read_bytes()
    with pytest.raises(RuntimeError), parquet_rows_atomic(target, REJECTS) as out:
        out.add_rows(_rejects(50))
        raise RuntimeError("stop")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]  # no temp file left


def test_counts_from_the_file_match_the_python_counts(tmp_path: Path) -> None:
    rows = _rejects(2000)
    write_parquet_atomic(tmp_path / "r.parquet", rows_to_table(rows, REJECTS))
    tiers, top = reject_summary(tmp_path / "r.parquet", n=20)
    assert tiers == reject_counts(rows)
    assert top == top_reasons(rows, n=20)
    assert reject_summary(tmp_path / "r.parquet") == (reject_counts(rows), top_reasons(rows))
    write_parquet_atomic(tmp_path / "e.parquet", rows_to_table([], REJECTS))
    assert reject_summary(tmp_path / "e.parquet") == ({}, {})
    apis = [{"api_id": str(k), "name": f"f{k}", "spec": "{}", "domain": "bcab"[k % 4],
             "source": "import"} for k in range(30)]  # fmt: skip
    write_parquet_atomic(tmp_path / "a.parquet", pa.Table.from_pylist(apis, schema=APIS))
    assert value_counts(tmp_path / "a.parquet", "domain") == {"a": 7, "b": 15, "c": 8}
