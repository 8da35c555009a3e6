"""The report and the offline `dvc plots show` page in a real browser (headless Chromium).

Chromium comes from the OS package registry (chromium-headless-shell, installed by the
fixture when running as root with apt); without it these tests skip and say why.
Chromium runs with an unreachable proxy and no DNS, and the DevTools protocol records
every request the page attempts: the only one allowed is the file itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from browser_cdp import Browser, colour_fraction, ensure_chromium, file_url, ink_fraction
from click.testing import CliRunner
from store_synth import add_report_inputs, build

from looptool.cli import main
from looptool.report.page import SECTIONS

REPO = Path(__file__).resolve().parents[1]
FIGURE_RECTS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('figure.chart')]
  .map(f => { const r = f.getBoundingClientRect();
              return [f.dataset.chart, [r.x + scrollX, r.y + scrollY, r.width, r.height]]; })))"""


@pytest.fixture(scope="module")
def chromium() -> str:
    binary, why = ensure_chromium()
    if binary is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    return binary


def test_report_renders_offline(chromium: str, tmp_path: Path) -> None:
    build(tmp_path, iters=2)
    add_report_inputs(tmp_path, iters=2)
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    with Browser(chromium) as b:
        page = b.load(file_url(out), "JSON.stringify([...document.querySelectorAll('section')]"
                      ".map(s => [s.id, s.querySelectorAll('svg').length]))", FIGURE_RECTS)  # fmt: skip
    assert page.requests == [file_url(out)], page.requests
    assert page.console_errors == [] and page.exceptions == []
    assert [s for s, _ in page.evaluated] == list(SECTIONS)
    assert all(n > 0 for _, n in page.evaluated)
    (tmp_path / "report.png").write_bytes(page.screenshot)
    assert ink_fraction(page.screenshot) > 0.05
    assert len(page.clips) >= 10
    for name, png in page.clips.items():
        assert ink_fraction(png) > 0.02, f"chart {name} looks blank"
        assert colour_fraction(png) > 0.002, f"chart {name} drew no data marks"


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_dvc_plots_show_offline(chromium: str, tmp_path: Path) -> None:
    """The repo's .dvc/config template makes `dvc plots show` pages work offline."""
    assert _dvc(tmp_path, "init", "--no-scm", "-q").returncode == 0
    cfg = _dvc(REPO, "config", "plots.html_template").stdout.strip()
    template = (REPO / ".dvc" / cfg).resolve()
    assert template.is_file(), cfg
    assert _dvc(tmp_path, "config", "plots.html_template", str(template)).returncode == 0
    (tmp_path / "train_plots.csv").write_text("step,reward\n1,0.1\n2,0.3\n3,0.2\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"plots": [{"train_plots.csv": {"x": "step", "y": "reward"}}]}))  # fmt: skip
    res = _dvc(tmp_path, "plots", "show", "-o", "plots_out")
    assert res.returncode == 0, res.stderr
    index = tmp_path / "plots_out" / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in text and "<script src" not in text
    rect = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('.vega-embed')]
      .map((e, i) => { const r = e.getBoundingClientRect();
                      return ['plot' + i, [r.x + scrollX, r.y + scrollY, r.width, r.height]]; })))"""
    with Browser(chromium) as b:
        page = b.load(file_url(index), "JSON.stringify(document.querySelectorAll("
                      "'.vega-embed canvas, .vega-embed svg.marks').length)", rect)  # fmt: skip
    assert page.requests == [file_url(index)], page.requests
    assert page.console_errors == [] and page.exceptions == [], (
        page.console_errors,
        page.exceptions,
    )
    assert page.evaluated >= 1, "vega-embed drew nothing"
    assert page.clips and all(ink_fraction(p) > 0.01 for p in page.clips.values())
