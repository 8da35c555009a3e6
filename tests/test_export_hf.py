"""`looptool export --format hf`: a folder `datasets.load_dataset` loads, one config per
split, TRL's prompt-completion format, and a dataset card whose YAML and counts are right.
`--push` is only ever exercised against an unreachable or offline Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.core.tables import label_from_json, sample_from_row
from looptool.engines.chatml import compile_template
from looptool.store.export import openai_record

DVC_LOCK = """schema: '2.0'
stages:
  compose@1:
    cmd: python -m stages.compose
    outs:
    - path: data/iter_3/dataset.parquet
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 1
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hfproj")
    build(root, iters=2)
    params = (Path(__file__).parents[1] / "params.yaml").read_text()
    assert "  license: apache-2.0" in params
    (root / "params.yaml").write_text(
        params.replace("  license: apache-2.0", "  license: cc-by-4.0")
    )
    (root / "dvc.lock").write_text(DVC_LOCK)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "params.yaml", "dvc.lock"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    return root


def _export(project: Path, out: Path, *extra: str, version: str = "D3"):
    args = ["export", version, "--root", str(project), "--format", "hf", "--out", str(out)]
    return CliRunner().invoke(main, [*args, *extra])


def _load(folder: Path, cache: Path, config: str | None = None) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), config, cache_dir=str(cache))


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def exported(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "d3"
    res = _export(project, out)
    assert res.exit_code == 0, res.output
    assert "records written" in res.output
    return out


def test_folder_loads_with_one_config_per_split(project: Path, exported: Path, tmp_path: Path):
    rows = pl.read_parquet(project / "data/iter_3/dataset.parquet").to_dicts()
    ds = _load(exported, tmp_path / "cache")
    assert list(ds) == ["train"]
    assert [r["sample_id"] for r in ds["train"]] != []
    assert sorted(r["sample_id"] for r in ds["train"]) == sorted(r["sample_id"] for r in rows)
    by_split = Counter(r["split"] for r in rows)
    assert set(by_split) == {"ES", "EE", "HPPL", "SEED_NEW"}
    for split, n in by_split.items():
        part = _load(exported, tmp_path / "cache", split.lower())["train"]
        assert part.num_rows == n
        assert set(part["split"]) == {split}
        # rows keep the version's order within a split
        assert part["sample_id"] == [r["sample_id"] for r in rows if r["split"] == split]


def test_rows_are_trl_prompt_completion_and_render_like_training(
    project: Path, exported: Path, tmp_path: Path
):
    from trl.data_utils import is_conversational

    rows = {
        (r["sample_id"], r["split"], r["copy"]): r
        for r in pl.read_parquet(project / "data/iter_3/dataset.parquet").to_dicts()
    }
    template = compile_template()
    seen_kinds = set()
    for rec in _load(exported, tmp_path / "cache")["train"]:
        assert is_conversational(rec)
        row = rows[(rec["sample_id"], rec["split"], rec["copy"])]
        sample, label = sample_from_row(row), label_from_json(row["label"])
        seen_kinds.add(rec["kind"])
        assert rec["label"] == row["label"] and rec["origin"] == row["origin"]
        [done] = rec["completion"]
        assert done["role"] == "assistant"
        if label.calls:
            got = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                   for c in done["tool_calls"]]  # fmt: skip
            assert got == [(c.name, c.arguments) for c in label.calls]
        else:
            assert done["content"] == label.text and done["tool_calls"] is None
        tools = json.loads(rec["tools"])
        assert [t["function"]["name"] for t in tools] == [t.name for t in sample.tools]
        # the loaded rows (null-filled fields included) render exactly as the OpenAI record
        ref = openai_record(sample, label, "2026-11-22")
        ref_msgs = [{k: v for k, v in m.items() if k != "weight"} for m in ref["messages"]]
        assert template.render(messages=rec["prompt"] + rec["completion"], tools=tools) == (
            template.render(messages=ref_msgs, tools=ref["tools"])
        )
    assert {"multi_step", "clarify", "parallel", "single"} <= seen_kinds


def test_card_yaml_and_counts(project: Path, exported: Path):
    card = (exported / "README.md").read_text()
    meta = _front_matter(card)
    rows = pl.read_parquet(project / "data/iter_3/dataset.parquet").to_dicts()
    assert meta["license"] == "cc-by-4.0"  # params.yaml project.license
    assert meta["size_categories"] == ["n<1K"]
    assert "text-generation" in meta["task_categories"]
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["all"]["default"] is True
    assert set(configs) == {"all", "es", "ee", "hppl", "seed_new"}
    for name in ("es", "ee", "hppl", "seed_new"):
        [files] = configs[name]["data_files"]
        assert files == {"split": "train", "path": f"{name}.parquet"}
        assert (exported / files["path"]).is_file()
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        ["README.md", "es.parquet", "ee.parquet", "hppl.parquet", "seed_new.parquet"]
    )
    # counts per split and kind: the table's rows
    table = {
        cells[0]: cells
        for line in card.split("## Counts per split and kind")[1].split("##")[0].splitlines()
        if line.startswith("| ") and not line.startswith("| split")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    kinds = [
        c.strip() for c in card.split("| split | config | rows | ")[1].split("\n")[0].split("|")
    ]
    kinds = [k for k in kinds if k]
    by_split = Counter(r["split"] for r in rows)
    for split, n in by_split.items():
        cells = table[split]
        assert int(cells[2]) == n
        for k, cell in zip(kinds, cells[3:], strict=True):
            assert int(cell) == sum(r["split"] == split and r["kind"] == k for r in rows)
    assert int(table["total"][2]) == len(rows)
    # provenance: origins, label corrections, commit, dvc.lock
    assert "relabel" in card and "edde" in card
    revised = sum(r["label_rev"] > 0 for r in rows)
    assert f"{revised:,} of {len(rows):,} rows carry a corrected label" in card
    commit = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert f"git commit: `{commit}" in card and f"git checkout {commit}" in card
    import hashlib

    lock_hash = hashlib.sha256((project / "dvc.lock").read_bytes()).hexdigest()
    assert f"dvc.lock sha256: `{lock_hash}`" in card
    assert "DVC stage `compose@1`" in card and "dvc repro compose@1" in card


def test_heldout_exports_as_test_split(project: Path, tmp_path: Path):
    out = tmp_path / "held"
    res = _export(project, out, version="heldout")
    assert res.exit_code == 0, res.output
    meta = _front_matter((out / "README.md").read_text())
    assert meta["configs"][0]["data_files"][0]["split"] == "test"
    assert list(_load(out, tmp_path / "cache")) == ["test"]


def test_out_guard(project: Path, exported: Path, tmp_path: Path):
    # an existing export is replaced only with --force
    res = _export(project, exported)
    assert res.exit_code == 1 and "not empty; pass --force" in res.output
    assert len(res.output.strip().splitlines()) == 1
    before = (exported / "README.md").stat().st_mtime_ns
    res = _export(project, exported, "--force")
    assert res.exit_code == 0, res.output
    assert (exported / "README.md").stat().st_mtime_ns != before
    # a folder holding anything the export does not write is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    res = _export(project, mine, "--force")
    assert res.exit_code == 1 and "notes.txt" in res.output and "left untouched" in res.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")]  # no temp left
    # missing parent; a file where the folder should be
    res = _export(project, tmp_path / "no" / "such")
    assert res.exit_code == 1 and "does not exist; create it first" in res.output
    (tmp_path / "afile").write_text("x")
    res = _export(project, tmp_path / "afile", "--force")
    assert res.exit_code == 1 and "not a folder" in res.output
    res = _export(project, project / ".git" / "x")
    assert res.exit_code == 1 and ".git" in res.output
    # --push only with --format hf
    res = CliRunner().invoke(main, ["export", "D3", "--root", str(project), "--format",
                                    "openai", "--out", str(tmp_path / "x.jsonl"), "--push", "a/b"])  # fmt: skip
    assert res.exit_code == 2 and "--push needs --format hf" in res.output


def test_out_guard_refuses_dvc_tracked_folder(tmp_path: Path):
    root = tmp_path / "dvcproj"
    build(root, iters=1)
    (root / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: 'true'\n    outs:\n      - data/iter_1\n"
    )
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    for target in (root / "data" / "iter_1" / "hf", root / "data"):
        res = _export(root, target, "--force", version="D1")
        assert res.exit_code == 1 and "DVC tracks" in res.output, res.output
    assert not (root / "data" / "iter_1" / "hf").exists()


def _cli(project: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "looptool.cli", "export", "D3", "--root", str(project),
           "--format", "hf", "--out", str(out), "--push", "someone/looptool-d3"]  # fmt: skip
    full = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **env}
    return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=300)


@pytest.mark.parametrize(
    "env, why",
    [
        ({"HF_HUB_OFFLINE": "1"}, "offline (HF_HUB_OFFLINE is set)"),
        # a closed local port: what an unreachable Hub looks like, without leaving the machine
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_x"},
         "cannot reach the Hub"),
    ],
)  # fmt: skip
def test_push_fails_with_one_line_offline(project: Path, tmp_path: Path, env: dict, why: str):
    out = tmp_path / "pushed"
    proc = _cli(project, out, env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], proc.stderr
    assert "push it later with `hf upload someone/looptool-d3" in lines[0]
    assert (out / "README.md").is_file()  # the folder itself is complete
