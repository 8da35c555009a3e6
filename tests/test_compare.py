"""looptool compare: the Wilson interval, the table / CSV / plot from synthetic eval.json
files, profile overrides applied by DVC's own code, the dry run, and a real run of two
arms as `dvc exp run --temp` experiments on a toy pipeline proving shared stages run once."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml
from dvc.utils.serialize import load_yaml

from looptool.compare.overrides import (
    OverrideError,
    check_overrides,
    encode_value,
    profile_overrides,
)
from looptool.compare.plot import write_plot
from looptool.compare.table import (
    COLUMNS,
    EvalFormatError,
    build_table,
    eval_row,
    format_table,
    warmstart_mismatch,
    write_csv,
)
from looptool.eval.interval import wilson_interval
from looptool.params import EvalParams, load_params
from tests.test_e2e_pipeline import BIN, REPO, _run

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson score, no continuity correction).
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), NEWCOMBE)
def test_wilson_matches_published_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_rejects_bad_counts() -> None:
    for k, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError, match="wilson_interval"):
            wilson_interval(k, n)


def _eval(acc: float | None, n: int, bfcl: float | None, **heldout) -> dict:
    return {
        "heldout": {"accuracy": acc, "n": n, **heldout},
        "bfcl": None if bfcl is None else {"overall": {"accuracy": bfcl, "n": 26}},
    }


def _synthetic() -> dict[str, dict[int, dict]]:
    warm = _eval(0.25, 40, 0.2, tool_call_rate=0.9)
    return {
        "loop": {
            0: warm,
            1: _eval(0.5, 40, 0.3, tool_call_rate=0.95),
            2: _eval(0.6, 40, 0.35, tool_call_rate=1.0, ci_low=0.1, ci_high=0.9),
        },
        "static": {0: warm, 1: _eval(0.5, 40, 0.3), 2: _eval(0.4, 40, None)},
    }


def test_table_csv_and_plot_from_synthetic_evals(tmp_path: Path) -> None:
    table = build_table(_synthetic())
    assert table.columns == list(COLUMNS)
    assert table.select("arm", "iteration").rows() == [
        ("loop", 0), ("loop", 1), ("loop", 2), ("static", 0), ("static", 1), ("static", 2),
    ]  # fmt: skip
    loop2 = table.row(2, named=True)
    assert (loop2["ci_low"], loop2["ci_high"]) == (0.1, 0.9)  # eval.json's interval wins
    static1 = table.row(4, named=True)
    assert (static1["ci_low"], static1["ci_high"]) == pytest.approx(wilson_interval(20, 40))
    assert static1["tool_call_rate"] is None and table.row(5, named=True)["bfcl_accuracy"] is None
    assert warmstart_mismatch(table) == []

    write_csv(table, tmp_path / "out" / "compare.csv")
    with open(tmp_path / "out" / "compare.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[4]["tool_call_rate"] == "" and rows[1]["tool_call_rate"] == "0.95"
    assert float(rows[4]["ci_low"]) == pytest.approx(wilson_interval(20, 40)[0])
    assert pl.read_csv(tmp_path / "out" / "compare.csv").height == 6

    write_plot(table, tmp_path / "out" / "compare.png")
    png = (tmp_path / "out" / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    text = format_table(table, {"loop": "grpo", "static": "grpo"})
    lines = text.splitlines()
    assert sum(line.startswith("warm start") for line in lines) == 1
    assert any(line.startswith("static") and "50.0 [35.2, 64.8]" in line for line in lines)


def test_budget_pool_and_paired_columns() -> None:
    from looptool.compare.experiments import ArmResult, pool_use

    evals = _synthetic()
    items = {f"h{i}": i < 20 for i in range(40)}  # loop: 20 of 40
    # static: right on 6 items loop got wrong, wrong on 1 it got right -> b = 6, c = 1
    static_items = {**items, **{f"h{i}": True for i in range(20, 26)}, "h0": False}
    train = {"global_step": 8, "sequences_trained": 64, "samples_trained": 64,
             "samples": 70, "samples_fitting": 64, "splits_trained": {"ES": 8, "SEED": 56},
             "kinds_dataset": {"clarify": 4, "single": 60}}  # fmt: skip
    ds = {1: ["p0", "p1", "x"], 2: ["p1", "p2", "p2"]}
    pool = pool_use(["p0", "p1", "p2", "p3"], ds)
    assert pool[1] == {"pool_size": 4, "pool_unique_seen": 2, "pool_seen_mean": 1.0,
                       "pool_seen_max": 1}  # fmt: skip
    assert pool[2]["pool_unique_seen"] == 3 and pool[2]["pool_seen_mean"] == pytest.approx(5 / 3)
    warm = {f"h{i}": i < 12 for i in range(40)}  # the warm start: 12 of 40
    details = {
        "loop": ArmResult(
            evals["loop"], "sft", {1: train, 2: train}, {0: warm, 1: items, 2: items}, pool
        ),
        "static": ArmResult(
            evals["static"], "sft", {1: train}, {0: warm, 1: items, 2: static_items}
        ),
    }
    table = build_table(evals, details)
    static2 = table.filter((pl.col("arm") == "static") & (pl.col("iteration") == 2)).row(
        0, named=True
    )
    assert (static2["n_paired"], static2["mcnemar_b"], static2["mcnemar_c"]) == (40, 6, 1)
    assert static2["mcnemar_p"] == pytest.approx(16 / 128)  # 2 x (1 + 7) / 2^7
    assert static2["steps"] is None  # no train metrics recorded for static at iteration 2
    loop1 = table.filter((pl.col("arm") == "loop") & (pl.col("iteration") == 1)).row(0, named=True)
    assert (loop1["steps"], loop1["sequences"], loop1["d_kinds"]) == (8, 64, "clarify=4 single=60")
    assert (loop1["too_long"], loop1["splits_trained"]) == (6, "ES=8 SEED=56")
    assert loop1["pool_unique_seen"] == 2 and loop1["mcnemar_p"] is None  # loop is the base
    # against the warm start: loop gains h12..h19 and loses none -> p = 2 / 2^8;
    # static gains h12..h25 and loses h0 -> p = 2 x (1 + 15) / 2^15
    loop2 = table.filter((pl.col("arm") == "loop") & (pl.col("iteration") == 2)).row(0, named=True)
    assert (loop2["warm_n_paired"], loop2["warm_gained"], loop2["warm_lost"]) == (40, 8, 0)
    assert loop2["warm_p"] == pytest.approx(2 / 2**8)
    assert (static2["warm_gained"], static2["warm_lost"]) == (14, 1)
    assert static2["warm_p"] == pytest.approx(32 / 2**15)
    text = format_table(table)
    assert "6/1 0.125" in text
    assert "loop 2: +8/-0 p 0.00781 (n 40); static 2: +14/-1 p 0.000977 (n 40)" in text


def test_guard_columns_and_the_tool_call_floor_line() -> None:
    from looptool.compare.experiments import ArmResult
    from looptool.compare.table import floor_lines

    evals = _synthetic()  # warm start's tool-call rate 0.9
    evals["static"][1] = _eval(0.5, 40, 0.3, tool_call_rate=0.7)  # below 0.75 x 0.9
    evals["static"][2] = _eval(0.4, 40, None, tool_call_rate=0.7)  # tie: the first is named
    guard = {"tool_call_rate": 0.6, "warmstart_tool_call_rate": 1.0, "min_ratio": 0.75,
             "ok": False}  # fmt: skip
    details = {"loop": ArmResult(evals["loop"], "sft", {1: {"guard": guard}}),
               "static": ArmResult(evals["static"], "sft")}  # fmt: skip
    table = build_table(evals, details)
    loop1 = table.filter((pl.col("arm") == "loop") & (pl.col("iteration") == 1)).row(0, named=True)
    assert (loop1["guard_tool_call_rate"], loop1["guard_min_ratio"], loop1["guard_ok"]) == (
        0.6,
        0.75,
        False,
    )
    assert floor_lines(table) == [
        "lowest held-out tool-call % (iterations 1..J) vs the floor 0.75 x warm start's 90.0 = 67.5:",
        "  loop 95.0 (iteration 1); static 70.0 (iteration 1)",
    ]
    evals["static"][1] = _eval(0.5, 40, 0.3, tool_call_rate=0.6)
    lines = floor_lines(build_table(evals))  # no guard recorded: the guard's default 0.8
    assert lines[0].endswith("0.8 x warm start's 90.0 = 72.0:")
    assert lines[1] == "  loop 95.0 (iteration 1); static 60.0 (iteration 1) BELOW"
    assert lines[1] in format_table(build_table(evals))
    no_rates = {"a": {0: _eval(0.2, 10, None), 1: _eval(0.3, 10, None)}}
    assert floor_lines(build_table(no_rates)) == []


def test_warmstart_mismatch_names_the_arm() -> None:
    evals = _synthetic()
    evals["static"][0] = _eval(0.3, 40, 0.2)
    assert warmstart_mismatch(build_table(evals)) == ["static"]


def test_eval_without_heldout_is_a_clear_error() -> None:
    with pytest.raises(EvalFormatError, match="arm 'loop' data/iter_1/eval.json"):
        build_table({"loop": {1: {"bfcl": None}}})
    with pytest.raises(EvalFormatError, match="x.json: heldout.n"):
        eval_row("a", 1, {"heldout": {"accuracy": 0.5, "n": 0}}, "x.json")


def test_encode_value_keeps_types() -> None:
    assert encode_value(5e-06) == "5e-6"
    assert encode_value("true") == "'true'"
    assert encode_value("data/models/x-1.5") == "data/models/x-1.5"
    assert encode_value("it's a b") == "'it\\'s a b'"
    assert encode_value([1, None, {"a.b": 2}]) == "[1, null, {a.b: 2}]"
    with pytest.raises(OverrideError, match="interpolation"):
        encode_value("${x}")


@pytest.mark.parametrize("profile", ["params.smol.yaml", "params.gpu.yaml"])
def test_profile_overrides_reproduce_the_profile(profile: str, tmp_path: Path) -> None:
    base_file, want = REPO / "params.yaml", load_yaml(REPO / profile)
    overrides = profile_overrides(load_yaml(base_file), want)
    assert overrides and all(o.startswith(("~", "++")) for o in overrides)
    check_overrides(base_file, want, overrides)  # DVC's -S code; raises on any difference
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    copy.write_text(base_file.read_text())
    apply_overrides(copy, overrides)
    assert load_params(copy).model_dump() == load_params(REPO / profile).model_dump()


def test_check_overrides_catches_a_wrong_override() -> None:
    want = load_yaml(REPO / "params.smol.yaml")
    overrides = profile_overrides(load_yaml(REPO / "params.yaml"), want)
    with pytest.raises(OverrideError, match="do not reproduce"):
        check_overrides(REPO / "params.yaml", want, overrides[:-1])


def test_evals_depend_on_every_eval_key_but_the_static_switches() -> None:
    """The warm start and iteration 1 are the same in every arm: their evaluations must not
    rerun per arm (the static switches only change what is trained from iteration 2 on)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    static = {"static_baseline", "static_source"}
    want = {f"eval.{k}" for k in EvalParams.model_fields if k not in static}
    for stage in (stages["eval_warmstart"], stages["eval"]["do"]):
        assert {p for p in stage["params"] if p.startswith("eval")} == want


def test_dry_run_prints_the_dvc_commands() -> None:
    out = _run([str(BIN / "looptool"), "compare", "--dry-run", "--ablations"], REPO).stdout
    lines = out.splitlines()
    assert lines[0] == "dvc exp run --temp --name compare-loop"
    assert lines[1] == "dvc exp run --temp --name compare-static -S eval.static_baseline=true"
    assert lines[2] == (
        "dvc exp run --temp --name compare-static_fresh -S eval.static_baseline=true "
        "-S eval.static_source=fresh"
    )
    assert lines[3] == "dvc exp run --temp --name compare-no_hppl -S loop.ablation=no_hppl"
    assert len(lines) == 9 and lines[-1].startswith("dvc plots diff compare-loop compare-static")
    picked = _run(
        [str(BIN / "looptool"), "compare", "--dry-run", "--arms", "loop,static,no_edde"], REPO
    ).stdout.splitlines()
    assert [ln.split()[5] for ln in picked[:3]] == [
        "compare-loop", "compare-static", "compare-no_edde"
    ]  # fmt: skip
    bad = subprocess.run([str(BIN / "looptool"), "compare", "--dry-run", "--arms", "loop,nope"],
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and "unknown arm(s) nope" in bad.stderr
    assert "data/iter_3/eval_curve.csv" in lines[-1]
    smol = _run(
        [str(BIN / "looptool"), "compare", "--dry-run", "--params", "params.smol.yaml"], REPO
    ).stdout.splitlines()
    assert "-S ++engines.policy.model=data/models/smollm2-135m-instruct" in smol[0]
    assert smol[1].endswith("-S eval.static_baseline=true")


# --- a real run: a toy pipeline whose stages log every execution -------------------------

TOY_STAGE = """
import json, sys
from pathlib import Path
import yaml
stage, j, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(log, "a") as fh:
    fh.write(f"{stage}@{j}\\n")
p = yaml.safe_load(open("params.yaml"))
static = p["eval"]["static_baseline"]
out = Path(f"data/iter_{j}")
out.mkdir(parents=True, exist_ok=True)
if stage == "seed":
    Path("data/seed").mkdir(parents=True, exist_ok=True)
    Path("data/seed/samples.txt").write_text("seed")
elif stage == "warmstart":
    (out / "model.txt").write_text("model 0")
else:
    if stage == "train":
        (out / "model.txt").write_text(f"model {j} static={static}")
    acc = 0.25 if j == 0 else 0.25 + j * (0.05 if static else 0.15)
    heldout = {"accuracy": acc, "n": 40}
    if not static:
        heldout["tool_call_rate"] = 0.9
    (out / "eval.json").write_text(json.dumps({"heldout": heldout, "bfcl": {"overall": {"accuracy": acc / 2}}}))
    (out / "eval_curve.csv").write_text(f"iter,heldout\\n{j},{acc}\\n")
"""


def _toy_dvc_yaml(log: Path) -> dict:
    run = f"python toy_stage.py {{}} {{}} {log}"
    return {
        "stages": {
            "seed": {"cmd": run.format("seed", 0), "deps": ["toy_stage.py"],
                     "params": ["project.seed"], "outs": ["data/seed/samples.txt"]},
            "warmstart": {"cmd": run.format("warmstart", 0), "deps": ["data/seed/samples.txt"],
                          "params": ["warmstart"], "outs": ["data/iter_0/model.txt"]},
            "eval_warmstart": {"cmd": run.format("eval", 0), "deps": ["data/iter_0/model.txt"],
                               "params": ["eval.max_tokens"],
                               "metrics": [{"data/iter_0/eval.json": {"cache": False}}],
                               "plots": [{"data/iter_0/eval_curve.csv": {"cache": False}}]},
            "train": {"foreach": "${iterations}", "do": {
                "cmd": run.format("train", "${item.j}"),
                "deps": ["data/iter_${item.prev}/model.txt"],
                "params": ["eval.static_baseline"],
                "outs": ["data/iter_${item.j}/model.txt"],
                "metrics": [{"data/iter_${item.j}/eval.json": {"cache": False}}],
                "plots": [{"data/iter_${item.j}/eval_curve.csv": {"cache": False}}]}},
        }
    }  # fmt: skip


def test_compare_runs_arms_as_experiments_sharing_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, log = tmp_path / "repo", tmp_path / "stage_runs.log"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["iterations"] = {
        str(j): {"j": j, "prev": j - 1, "next": j + 1, "overrides": {}} for j in (1, 2)
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "toy_stage.py").write_text(TOY_STAGE)
    (root / "dvc.yaml").write_text(yaml.safe_dump(_toy_dvc_yaml(log), sort_keys=False))
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, os.environ.get(key, "t@t"))  # DVC commits the experiments
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "toy"], root)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip

    cmp = [str(BIN / "looptool"), "compare", "--out", "cmp", "--arms", "loop,static"]
    res = _run(cmp, root)
    ran = log.read_text().splitlines()
    # shared stages once; each arm trains (the flag is a param of train@j)
    assert sorted(ran) == sorted(["seed@0", "warmstart@0", "eval@0",
                                  "train@1", "train@2", "train@1", "train@2"])  # fmt: skip
    table = pl.read_csv(root / "cmp" / "compare.csv")
    assert table.columns == list(COLUMNS)
    assert table.select("arm", "iteration").rows() == [
        ("loop", 0), ("loop", 1), ("loop", 2), ("static", 0), ("static", 1), ("static", 2),
    ]  # fmt: skip
    assert table["heldout_exact"].to_list() == pytest.approx([0.25, 0.4, 0.55, 0.25, 0.3, 0.35])
    # iteration 0 is the loop arm's warm start; the toy static arm records no rate
    assert table.filter(pl.col("arm") == "static")["tool_call_rate"].to_list() == [0.9, None, None]
    assert table["ci_low"][2] == pytest.approx(wilson_interval(22, 40)[0])
    assert "warm start" in res.stdout and "trainer: grpo" in res.stdout
    assert (root / "cmp" / "compare.png").is_file()
    assert (root / "cmp" / "dvc_plots" / "index.html").is_file()
    # the workspace is untouched: no params change, no outputs checked out
    after = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert after.replace("?? cmp/\n", "") == before
    assert not (root / "data" / "iter_1").exists()

    # a second run keeps the finished arms and runs nothing
    again = _run(cmp, root)
    assert "compare-loop: experiment exists on this commit, kept" in again.stderr
    assert log.read_text().splitlines() == ran
    # an arm whose experiment is missing (a killed compare) runs again from the run-cache
    _run([str(BIN / "dvc"), "exp", "remove", "compare-static"], root)
    _run(cmp, root)
    assert log.read_text().splitlines() == ran
    # --replace reruns every arm; every stage then comes back from the run-cache
    _run([*cmp, "--replace"], root)
    assert log.read_text().splitlines() == ran
    collected = _run([*cmp[:2], "--out", "cmp2", *cmp[4:], "--collect-only"], root)
    assert pl.read_csv(root / "cmp2" / "compare.csv").equals(table)
    assert "static" in collected.stdout and "compare-static" in collected.stdout
