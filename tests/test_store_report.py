"""`looptool report`: a self-contained page whose numbers equal `looptool sql` answers."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from store_synth import add_report_inputs, build

from looptool.cli import main
from looptool.eval.interval import wilson_interval
from looptool.report.page import SECTIONS


class _Tables(HTMLParser):
    """data-table name -> rows of cell texts (header row first); section ids; svg count."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.sections: dict[str, int] = {}  # id -> charts inside
        self._table: str | None = None
        self._section: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a["id"]
            self.sections[self._section] = 0
        elif tag == "svg" and self._section:
            self.sections[self._section] += 1
        elif tag == "table":
            self._table = a["data-table"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def _frame(rows: list[list[str]]) -> pl.DataFrame:
    """A parsed HTML table as a frame: numbers where the text is a number, '–' = null."""

    def conv(v: str) -> object:
        if v == "–":
            return None
        try:
            return float(v)
        except ValueError:
            return v

    return pl.DataFrame([[conv(v) for v in r] for r in rows[1:]], schema=rows[0], orient="row")


def _sql(root: Path, query: str, tmp: Path) -> pl.DataFrame:
    out = tmp / "q.csv"
    args = ["sql", query, "--root", str(root), "--csv", str(out), "--force"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return pl.read_csv(out)


def _assert_rows(report: pl.DataFrame, sql: pl.DataFrame, keys: list[str], value: str) -> None:
    got = {tuple(r[k] for k in keys): r[value] for r in report.to_dicts()}
    want = {tuple(r[k] for k in keys): r[value] for r in sql.to_dicts()}
    assert got.keys() == {tuple(float(x) if isinstance(x, int) else x for x in k) for k in want}
    for k, v in want.items():
        kk = tuple(float(x) if isinstance(x, int) else x for x in k)
        assert got[kk] == pytest.approx(v, abs=5e-5), (k, got[kk], v)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report")
    build(root, iters=2)
    add_report_inputs(root, iters=2)
    res = CliRunner().invoke(main, ["report", "--root", str(root), "--out", str(root / "r.html")])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str((root / "r.html").resolve())
    return root, (root / "r.html").read_text(encoding="utf-8")


def test_self_contained_no_external_reference(run: tuple[Path, str]) -> None:
    _, page = run
    assert "http://" not in page and "https://" not in page  # not even an SVG namespace
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page, re.I)
    assert not re.search(r"@import|url\((?!#)", page)
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith("#") for r in refs), sorted(set(refs))[:5]
    # every chart's element ids are unique on the page (several SVGs share one document)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_every_section_has_charts(run: tuple[Path, str]) -> None:
    _, page = run
    p = _Tables()
    p.feed(page)
    assert list(p.sections) == list(SECTIONS)
    assert all(n >= 1 for n in p.sections.values()), p.sections
    assert "Not built yet" not in page
    # DVCLive metrics, also those only the newer trainer logs, get a panel (SVG text kept)
    for col in ("reward", "frac_reward_zero_std", "toolmatch/tool_call_rate",
                "toolmatch/reward_call"):  # fmt: skip
        assert f">{col}</text>" in page


def test_numbers_equal_sql(run: tuple[Path, str], tmp_path: Path) -> None:
    root, page = run
    p = _Tables()
    p.feed(page)
    t = {k: _frame(v) for k, v in p.tables.items()}

    splits = _sql(root, "SELECT iter, split, count(*) n FROM datasets GROUP BY ALL", tmp_path)
    comp = t["composition"].unpivot(index="iter", variable_name="split", value_name="n")
    _assert_rows(comp.filter(pl.col("n") > 0), splits, ["iter", "split"], "n")

    q = "SELECT iter, avg(match::INT) AS mastery_rate, sum(hppl::INT) AS hppl FROM probe GROUP BY iter"
    probe = _sql(root, q, tmp_path)
    _assert_rows(t["mastery"], probe, ["iter"], "mastery_rate")
    _assert_rows(t["mastery"], probe, ["iter"], "hppl")

    q = "SELECT iter, tier, verdict, count(*) n FROM verdicts GROUP BY ALL"
    _assert_rows(t["verdicts"], _sql(root, q, tmp_path), ["iter", "tier", "verdict"], "n")
    q = "SELECT iter, count(*) n FROM verdicts WHERE verdict = 'LABEL_WRONG' GROUP BY iter"
    _assert_rows(t["corrections"], _sql(root, q, tmp_path), ["iter"], "n")
    ex = t["correction_examples"]
    assert ex.height >= 1 and ex["label_before"].to_list() != ex["label_after"].to_list()

    q = "SELECT iter, scenario, avg(accepted::INT) acceptance FROM expansions GROUP BY ALL"
    _assert_rows(t["edde"], _sql(root, q, tmp_path), ["iter", "scenario"], "acceptance")
    q = "SELECT iter, reject_reason, count(*) n FROM expansions WHERE NOT accepted GROUP BY ALL"
    _assert_rows(t["reject_reasons"], _sql(root, q, tmp_path), ["iter", "reject_reason"], "n")

    q = "SELECT iter, value AS accuracy FROM metrics WHERE stage = 'eval' AND key = 'heldout.accuracy'"
    _assert_rows(t["heldout"], _sql(root, q, tmp_path), ["iter"], "accuracy")
    q = ("SELECT iter, avg((raw_text LIKE '%<tool_call>%')::INT) tool_call_rate FROM eval_items "
         "WHERE suite = 'heldout' GROUP BY iter")  # fmt: skip
    _assert_rows(t["heldout"], _sql(root, q, tmp_path), ["iter"], "tool_call_rate")
    for r in t["heldout"].to_dicts():  # the band is the Wilson interval of accuracy over n
        lo, hi = wilson_interval(round(r["accuracy"] * r["n"]), r["n"])
        assert (r["ci_low"], r["ci_high"]) == (
            pytest.approx(lo, abs=5e-5),
            pytest.approx(hi, abs=5e-5),
        )
    q = ("SELECT iter, split_part(key, '.', 2) category, value accuracy FROM metrics "
         "WHERE stage = 'eval' AND key LIKE 'bfcl.%.accuracy'")  # fmt: skip
    bfcl = (
        t["bfcl"].drop("n").unpivot(index="category", variable_name="iter", value_name="accuracy")
    )
    bfcl = bfcl.with_columns(pl.col("iter").str.strip_prefix("iter ").cast(pl.Float64))
    _assert_rows(bfcl, _sql(root, q, tmp_path), ["iter", "category"], "accuracy")
    assert t["bfcl"]["category"][0] == "overall"

    q = "SELECT iter, value llm_calls_avoided FROM metrics WHERE key = 'llm_calls_avoided'"
    _assert_rows(t["judge_calls"], _sql(root, q, tmp_path), ["iter"], "llm_calls_avoided")
    q = "SELECT iter, value recall FROM metrics WHERE key = 'label_correction.recall'"
    _assert_rows(t["label_noise"], _sql(root, q, tmp_path), ["iter"], "recall")
    q = "SELECT iter, value reward_mean FROM metrics WHERE stage = 'train' AND key = 'reward_mean'"
    _assert_rows(t["train_summary"], _sql(root, q, tmp_path), ["iter"], "reward_mean")

    q = "SELECT version, kind, count(*) n FROM samples WHERE version IN ('seed', 'heldout') GROUP BY ALL"
    _assert_rows(t["seed_kinds"], _sql(root, q, tmp_path), ["version", "kind"], "n")
    div = dict(t["seed_diversity"].iter_rows())
    q = "SELECT count(*) samples, count(DISTINCT dialogue_id) dialogues FROM samples WHERE version = 'seed'"
    want = _sql(root, q, tmp_path).row(0, named=True)
    assert (div["samples"], div["dialogues"]) == (want["samples"], want["dialogues"])

    arms = pl.read_csv(root / "compare" / "compare.csv")
    assert t["arms"].height == arms.height
    assert sorted(set(t["arms"]["arm"])) == ["no_hppl", "static"]


def test_train_steps_view_unions_columns(run: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = run
    q = ('SELECT iter, count(*) n, count("toolmatch/tool_call_rate") calls, '
         "count(reward) rewards, min(step) lo, max(step) hi FROM train_steps "
         "GROUP BY iter ORDER BY iter")  # fmt: skip
    df = _sql(root, q, tmp_path)
    # read from DVCLive's files; iteration 1 logged no tool_call_rate
    assert df.rows() == [(1, 6, 0, 6, 1, 6), (2, 6, 6, 6, 1, 6)]


def test_exp_filter_and_bad_compare(run: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = run
    out = tmp_path / "r.html"
    res = CliRunner().invoke(
        main, ["report", "--root", str(root), "--out", str(out), "--exp", "static"]
    )
    assert res.exit_code == 0, res.output
    p = _Tables()
    p.feed(out.read_text(encoding="utf-8"))
    assert set(_frame(p.tables["arms"])["arm"]) == {"static"}
    res = CliRunner().invoke(
        main, ["report", "--root", str(root), "--out", str(out), "--exp", "nope", "--force"]
    )
    assert res.exit_code != 0 and "no arm named nope" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("arm,iter\nstatic,1\n")
    res = CliRunner().invoke(
        main, ["report", "--root", str(root), "--out", str(out), "--compare", str(bad), "--force"]
    )
    assert res.exit_code != 0 and f"{bad}: missing column(s) iteration, heldout_exact" in res.output
    assert "Traceback" not in res.output


def test_empty_project_reports_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")  # a project with nothing built yet
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    p = _Tables()
    p.feed(page)
    assert list(p.sections) == list(SECTIONS)
    assert page.count("Not built yet") == len(SECTIONS)


def test_without_noise_injection_says_so(tmp_path: Path) -> None:
    build(tmp_path, iters=1)
    add_report_inputs(tmp_path, iters=1, noise=False)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    assert "Label-noise injection is off" in page and 'data-table="label_noise"' not in page


def test_metrics_only_checkout_falls_back_to_stage_metrics(tmp_path: Path) -> None:
    """Without `dvc pull` only the git-tracked metrics JSON exist: the figures they carry
    are drawn from them, and the captions say so."""
    from looptool.store.io import write_json_atomic

    it = tmp_path / "data" / "iter_1"
    write_json_atomic(it / "init_metrics.json", {"iteration": 1, "splits": {"SEED": 128}})
    write_json_atomic(it / "compose_metrics.json",
                      {"iteration": 2, "splits": {"EE": 69, "ES": 19, "HPPL": 1, "SEED_NEW": 39}})  # fmt: skip
    write_json_atomic(it / "probe_metrics.json", {"n": 128, "mastered": 27, "hppl": 7,
                      "mastery_rate": 0.2109375, "hppl_threshold": 1.549})  # fmt: skip
    write_json_atomic(it / "judge_metrics.json", {
        "verdicts": {"PRED_WRONG": 99, "LABEL_WRONG": 2},
        "verdicts_per_tier": {"llm": {"PRED_WRONG": 90}, "rules": {"PRED_WRONG": 9, "LABEL_WRONG": 2}},
        "llm_calls_made": 360, "llm_calls_avoided": 44, "order_disagreements": 7})  # fmt: skip
    write_json_atomic(it / "expand_metrics.json", {
        "per_scenario": {"complexity": {"accepted": 76, "generated": 77},
                         "domain_shift": {"accepted": 60, "generated": 64}},
        "top_reject_reasons": {"dedup: near-duplicate of its seed (jaccard #)": 5}})  # fmt: skip
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    p = _Tables()
    p.feed(page)
    t = {k: _frame(v) for k, v in p.tables.items()}
    assert page.count("iterations without the table") == 6
    assert dict(zip(t["composition"]["iter"], t["composition"]["SEED_NEW"], strict=True)) == {
        1.0: 0.0, 2.0: 39.0}  # fmt: skip
    assert t["mastery"].row(0, named=True)["mastery_rate"] == pytest.approx(0.2109, abs=1e-4)
    v = {(r["tier"], r["verdict"]): r["n"] for r in t["verdicts"].to_dicts()}
    assert v == {("llm", "PRED_WRONG"): 90, ("rules", "PRED_WRONG"): 9, ("rules", "LABEL_WRONG"): 2}
    assert t["corrections"].rows() == [(1.0, 2.0)]
    e = {r["scenario"]: r["acceptance"] for r in t["edde"].to_dicts()}
    assert e == {
        "complexity": pytest.approx(76 / 77, abs=1e-4),
        "domain_shift": pytest.approx(60 / 64),
    }
    assert t["reject_reasons"].row(0, named=True)["reject_tier"] == "dedup"
    # what only the tables hold is reported as not built, not invented
    assert 'data-table="ppl"' not in page and 'data-table="correction_examples"' not in page


def test_arms_from_another_run_are_flagged() -> None:
    """compare.csv whose warm start scored otherwise than this run's eval@0 (e.g. left from
    other params) is named in the report instead of being overlaid silently."""
    from looptool.report.data import arms_from_elsewhere

    own = pl.DataFrame({"iter": [0, 1], "n": [150, 150], "accuracy": [0.08, 0.1]})
    arms = pl.DataFrame(
        {"arm": ["loop", "loop"], "iteration": [0, 1], "n": [150, 150],
         "heldout_exact": [0.08, 0.12]}
    )  # fmt: skip
    assert arms_from_elsewhere(own, arms) is None
    other = arms.with_columns(heldout_exact=pl.Series([0.147, 0.133]))
    note = arms_from_elsewhere(own, other)
    assert note is not None and "scored 0.147 on 150 held-out items, this run's 0.080" in note
    assert arms_from_elsewhere(own.filter(pl.col("iter") > 0), other) is None  # no eval@0
