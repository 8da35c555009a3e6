"""DVC reads a training run's DVCLive files with no code of ours in between: a tiny GRPO run
as a `dvc repro` stage declared with the repo's own dvc.yaml entries for train@j, then an
experiment of it (`dvc exp run --temp`, as `looptool compare` runs arms); `dvc exp show
--json` lists the per-step metrics of both, `dvc plots show` renders their curves offline
with the vendored vega template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_train import synthetic_samples, write_samples

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
J = 1

TRAIN_SCRIPT = """\
import sys
import yaml
from looptool.loop.train import train_grpo
from looptool.params.train import TrainParams

p = yaml.safe_load(open("params.yaml"))["train"]
params = TrainParams(learning_rate=1e-2, prompts_per_step=2, num_generations=2,
                     micro_batch_size=4, max_steps=p["max_steps"], max_completion_length=12,
                     save_steps=1, device="cpu", cpu_threads=1)
train_grpo("data/dataset.parquet", "tiny", "data/iter_1/model", params, date="2026-11-22",
           scratch_root=".cache/scratch", name="iter_1", live_dir="data/iter_1/dvclive")
"""


def _dvc_entries(kind: str) -> list:
    """The train@j stage's dvclive entries of ``kind`` (outs/metrics/plots) in the repo's
    dvc.yaml, for iteration J."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["do"]
    text = json.dumps([e for e in stage[kind] if "dvclive" in json.dumps(e)])
    return json.loads(text.replace("${item.j}", str(J)))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}  # fmt: skip
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(args)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir) -> Path:
    import shutil

    root = tmp_path_factory.mktemp("dvclive") / "proj"
    root.mkdir()
    shutil.copytree(tiny_model_dir, root / "tiny")
    write_samples(root / "data" / "dataset.parquet", synthetic_samples(12, seed=1))
    (root / "train.py").write_text(TRAIN_SCRIPT)
    (root / "params.yaml").write_text("train:\n  max_steps: 2\n")
    stage = {
        "cmd": "python train.py",
        "deps": ["train.py", "tiny", "data/dataset.parquet"],
        "params": ["train.max_steps"],
        "outs": ["data/iter_1/model", *_dvc_entries("outs")],
        "metrics": _dvc_entries("metrics"),
        "plots": _dvc_entries("plots"),
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    (root / ".gitignore").write_text(".cache/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    template = (REPO / "vendor" / "vega" / "dvc_plots_offline.html").resolve()
    _run([str(BIN / "dvc"), "config", "plots.html_template", str(template)], root)
    _run([str(BIN / "dvc"), "config", "core.analytics", "false"], root)
    _run([str(BIN / "dvc"), "repro", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run([*git, "commit", "-q", "-m", "baseline"], root)
    _run([str(BIN / "dvc"), "exp", "run", "--temp", "-q", "--name", "longer",
          "-S", "train.max_steps=3"], root)  # fmt: skip
    return root


def _metrics(node: dict) -> dict:
    data = node.get("data") or {}
    files = data.get("metrics") or {}
    return files.get(f"data/iter_{J}/dvclive/metrics.json", {}).get("data", {})


def test_the_declared_paths_are_dvclive_s(project: Path) -> None:
    metrics = [next(iter(e)) if isinstance(e, dict) else e for e in _dvc_entries("metrics")]
    plots = [next(iter(e)) for e in _dvc_entries("plots")]
    assert metrics == [f"data/iter_{J}/dvclive/metrics.json"]
    assert plots == [f"data/iter_{J}/dvclive/plots/metrics"]
    for path in (*metrics, *plots):
        assert (project / path).exists(), path
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]
    outs = {o["path"] for o in lock["outs"]}
    assert {*metrics, *plots, f"data/iter_{J}/dvclive/params.yaml"} <= outs
    # everything DVCLive wrote is declared: `dvc exp run` would git-add anything else
    written = {
        p.relative_to(project).as_posix() for p in (project / "data/iter_1/dvclive").glob("*")
    }
    assert written <= outs | {f"data/iter_{J}/dvclive/plots"}


def test_exp_show_lists_every_run_s_dvclive_metrics(project: Path) -> None:
    rows = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], project).stdout)
    baseline = _metrics(rows[0])
    assert baseline["step"] == 2 and 0.0 <= baseline["reward"] <= 1.0
    assert {"match_rate", "tool_call_rate"} <= set(baseline["toolmatch"])
    assert "frac_reward_zero_std" in baseline and "loss" in baseline
    exps = [e for r in rows for e in (r.get("experiments") or [])]
    names = {e.get("name"): e for e in exps}
    assert "longer" in names, rows
    arm = _metrics(names["longer"]["revs"][0])
    assert arm["step"] == 3 and "toolmatch" in arm


def test_plots_show_renders_the_curves_offline(project: Path) -> None:
    out = _run([str(BIN / "dvc"), "plots", "show", "--json"], project).stdout
    plots = json.loads(out)["data"]
    base = f"data/iter_{J}/dvclive/plots/metrics"
    assert {f"{base}/reward.tsv", f"{base}/toolmatch/tool_call_rate.tsv"} <= set(plots)
    (spec,) = plots[f"{base}/reward.tsv"]
    assert spec["type"] == "vega" and spec["content"]["encoding"]["x"]["field"] == "step"
    assert [v["step"] for v in spec["content"]["data"]["values"]] == ["1", "2"]
    _run([str(BIN / "dvc"), "plots", "show", "-o", "plots_out"], project)
    page = (project / "plots_out" / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and "<script src" not in page  # vega inlined
    assert f"{base}/reward.tsv" in page and "toolmatch/tool_call_rate" in page


def test_plots_diff_compares_the_arms(project: Path) -> None:
    res = _run([str(BIN / "dvc"), "plots", "diff", "longer", "--json"], project)
    (spec,) = json.loads(res.stdout)["data"][f"data/iter_{J}/dvclive/plots/metrics/reward.tsv"]
    steps = {}
    for v in spec["content"]["data"]["values"]:
        steps.setdefault(v["rev"], []).append(v["step"])
    assert steps == {"workspace": ["1", "2"], "longer": ["1", "2", "3"]}


def test_plots_page_draws_in_a_browser_without_network(project: Path) -> None:
    """The `dvc plots show` page of the DVCLive curves in headless Chromium: no request but
    the file itself, and vega draws every plot (skips without Chromium)."""
    from browser_cdp import Browser, ensure_chromium, file_url, ink_fraction

    binary, why = ensure_chromium()
    if binary is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    _run([str(BIN / "dvc"), "plots", "show", "-o", "plots_page"], project)
    index = project / "plots_page" / "index.html"
    count = "JSON.stringify(document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length)"
    with Browser(binary) as b:
        page = b.load(file_url(index), count)
    assert page.requests == [file_url(index)], page.requests
    assert page.console_errors == [] and page.exceptions == []
    assert int(page.evaluated) >= 20  # one chart per DVCLive metric
    assert ink_fraction(page.screenshot) > 0.01
