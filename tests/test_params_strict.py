"""params files are read strictly and every failure is one line naming the file, the key
and (for YAML problems) the line (issue 27, items 8 and 10)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from looptool.params import ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]
BASE = (REPO / "params.yaml").read_text()


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def _with(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_duplicate_keys_are_refused_with_key_and_line(tmp_path: Path) -> None:
    lines = BASE.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("loop:")) + 1
    dup = lines[:at] + ["  dataset_size: 7", "  dataset_size: 9"] + lines[at:]
    p = _with(tmp_path, "\n".join(dup) + "\n")
    with pytest.raises(ParamsError) as exc:
        load_params(p)
    _one_line(exc, "mine.yaml", f"line {at + 2}", "duplicate key 'dataset_size'")
    # top-level and nested duplicates alike
    p = _with(tmp_path, BASE + "project: {seed: 1}\n")
    with pytest.raises(ParamsError) as exc:
        load_params(p)
    _one_line(exc, "mine.yaml", "duplicate key 'project'")
    # YAML merge keys (`<<`) are not duplicates: the explicit key overrides the merged one
    merged = yaml.safe_load(BASE)
    assert merged["loop"]["dataset_size"] != 3
    text = re.sub(r"^loop:", "loop: &lp", BASE, count=1, flags=re.M)
    text += "x_anchor_use: {<<: *lp, dataset_size: 3}\n"
    with pytest.raises(ParamsError) as exc:  # only the unknown section is reported
        load_params(_with(tmp_path, text))
    _one_line(exc, "x_anchor_use")


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("  dataset_size:", "true", "integer"),
        ("  dataset_size:", "'300'", "integer"),
        ("  dataset_size:", "300.0", "integer"),
        ("  hppl_quantile:", "false", "number"),
        ("  hppl_quantile:", "'0.25'", "number"),
        ("  use_cache:", "1", "true or false"),
        ("  use_cache:", "'yes'", "true or false"),
    ],
)
def test_numbers_and_switches_are_strict(tmp_path: Path, key: str, value: str, kind: str) -> None:
    lines = BASE.splitlines()
    hits = [i for i, ln in enumerate(lines) if ln.strip().startswith(key.strip())]
    assert hits, key
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = f"{indent}{key.strip()} {value}"
    p = _with(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ParamsError) as exc:
        load_params(p)
    _one_line(exc, "mine.yaml", key.strip().rstrip(":"), kind)


def test_overrides_are_strict_too(tmp_path: Path) -> None:
    params = yaml.safe_load(BASE)
    params["iterations"]["1"]["overrides"] = {"loop.dataset_size": True}
    p = _with(tmp_path, yaml.safe_dump(params))
    with pytest.raises(ParamsError) as exc:
        load_params(p).for_iteration(1)
    _one_line(exc, "loop.dataset_size", "integer")


def test_ints_still_fill_float_fields(tmp_path: Path) -> None:
    params = yaml.safe_load(BASE)
    params["loop"]["probe"]["hppl_quantile"] = 1
    got = load_params(_with(tmp_path, yaml.safe_dump(params))).loop.probe.hppl_quantile
    assert got == 1.0 and isinstance(got, float)
    # YAML 1.2 floats as DVC writes them (`dvc exp run -S`): numbers, not strings
    text = re.sub(r"^(\s+learning_rate:).*$", r"\1 5e-06", BASE, count=1, flags=re.M)
    assert load_params(_with(tmp_path, text)).warmstart.learning_rate == 5e-06


def test_every_shipped_profile_is_strictly_valid() -> None:
    for p in sorted(REPO.glob("params*.yaml")):
        load_params(p)


def test_unreadable_params_files_are_one_line(tmp_path: Path) -> None:
    latin = _with(tmp_path, "", "latin.yaml")
    latin.write_bytes(BASE.replace("2026-11-22", "caf\xe9").encode("latin-1"))
    binary = _with(tmp_path, "", "binary.yaml")
    binary.write_bytes(bytes(range(256)) * 4)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    broken = _with(tmp_path, BASE + "loop: [\n", "broken.yaml")
    listed = _with(tmp_path, "- a\n- b\n", "listed.yaml")
    cases = [(latin, "UTF-8"), (binary, "UTF-8"), (folder, "not a file"),
             (broken, "line"), (listed, "mapping")]  # fmt: skip
    for path, needle in cases:
        with pytest.raises(ParamsError) as exc:
            load_params(path)
        _one_line(exc, path.name, needle)


@pytest.mark.parametrize("case", ["latin", "binary", "folder", "untracked", "override"])
def test_check_params_stage_prints_one_line_naming_the_given_file(
    tmp_path: Path, case: str
) -> None:
    p = tmp_path / "other.yaml"
    if case == "latin":
        p.write_bytes(BASE.replace("2026-11-22", "caf\xe9").encode("latin-1"))
    elif case == "binary":
        p.write_bytes(b"\x00\xff\xfe" * 100)
    elif case == "folder":
        p.mkdir()
    else:
        params = yaml.safe_load(BASE)
        if case == "untracked":
            params["seed"]["apis"]["imports"] = [{"path": "/elsewhere/tools.json"}]
        else:
            params["iterations"]["1"]["overrides"] = {"loop.nope": 1}
        p.write_text(yaml.safe_dump(params))
    res = subprocess.run(
        [sys.executable, "-m", "stages.check_params", "--params", str(p)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    out = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode != 0 and len(out) == 1, res.stdout + res.stderr
    assert out[0].startswith("error: ") and "other.yaml" in out[0], out
    assert "params.yaml" not in out[0], out
