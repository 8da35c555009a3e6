"""`looptool eval bfcl` on a predictions file with nothing in it fails instead of scoring 0 of 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from looptool.cli import main


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_predictions_exit_non_zero(tmp_path: Path, content: str) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text(content)
    res = CliRunner().invoke(main, ["eval", "bfcl", "--predictions", str(preds)])
    assert res.exit_code == 1, res.output
    assert f"{preds}: no predictions in the file" in res.output and "Traceback" not in res.output
