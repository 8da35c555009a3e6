"""`looptool cache stats` / `cache prune` (#29): sizes per role, model and stage, the last
run's hit rate, pruning by checkpoint fingerprint, age and size, refused during a repro;
what an entry stores."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from looptool.engines.base import ChatRequest, Generation, SamplingParams, Score, ScoreRequest
from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import CACHE_FILE, RequestCache, parse_size
from looptool.engines.checkpoint import model_fingerprint
from looptool.engines.cli import cache_group


class Fake:
    """A backend answering with token ids and log-probs, under a chosen identity."""

    backend, batch_size = "hf", 8

    def __init__(self, model_id: str):
        self.model_id = model_id

    def generate(self, reqs):
        return [[Generation(text=r.messages[-1]["content"] * 40, token_ids=[1, 2, 3],
                            logprobs=[-0.1, -0.2, -0.3])] for r in reqs]  # fmt: skip

    def score(self, reqs):
        return [Score(token_logprobs=[-1.0, -2.0], token_ids=[5, 6]) for _ in reqs]


def _req(text: str, logprobs: bool = False) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": text}], params=SamplingParams(logprobs=logprobs)
    )


def _checkpoint(path: Path, weights: bytes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root (dvc.yaml) as cwd, its cache at .cache/looptool."""
    monkeypatch.delenv("LOOPTOOL_CACHE_DIR", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _keys(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as con:
        return dict(con.execute("SELECT key, model_id FROM requests"))


def _fill(cache: RequestCache, model_id: str, role: str, texts, monkeypatch, stage: str):
    monkeypatch.setenv("DVC_STAGE", stage)
    eng = CachedEngine(Fake(model_id), cache, progress=False, role=role)
    eng.generate([_req(t) for t in texts])
    return eng


def test_entries_store_token_ids_and_logprobs_only_where_read_back(project):
    with RequestCache(project / CACHE_FILE) as cache:
        eng = CachedEngine(Fake("m@0123456789abcdef:float32"), cache, progress=False)
        plain, with_lp = eng.generate([_req("a"), _req("b", logprobs=True)])
        eng.score([ScoreRequest(messages=[], completion="x")])
        stored = {
            kind: json.loads(resp)
            for kind, resp in cache._conn.execute("SELECT kind, response FROM requests")
            if kind == "score"
        }
        gens = [json.loads(r) for (r,) in cache._conn.execute(
            "SELECT response FROM requests WHERE kind = 'generate' ORDER BY key")]  # fmt: skip
        stats = eng.stats()
    # a miss answers exactly what a later hit will: no token ids; log-probs when asked
    assert plain[0].token_ids is None and plain[0].logprobs is None
    assert with_lp[0].logprobs == [-0.1, -0.2, -0.3] and with_lp[0].token_ids is None
    assert all("token_ids" not in g[0] for g in gens)
    assert sorted("logprobs" in g[0] for g in gens) == [False, True]
    assert stored["score"] == {"token_logprobs": [-1.0, -2.0]}
    # the stage metrics carry the bytes this engine stored and the cache's size on disk
    assert stats["cache_bytes_written"] > 0 and stats["cache_bytes"] > stats["cache_bytes_written"]


def test_stats_per_role_model_stage_and_last_run_hit_rate(project, monkeypatch):
    path = project / ".cache/looptool" / CACHE_FILE
    with RequestCache(path) as cache:
        _fill(
            cache, "p@aaaaaaaaaaaaaaaa:float32", "policy", ["a", "b", "c"], monkeypatch, "probe@1"
        )
        _fill(cache, "j@bbbbbbbbbbbbbbbb:float32", "judge", ["x"], monkeypatch, "judge@1")
        # a rerun of probe@1: 3 hits, 1 miss; this is the last run of (probe@1, policy)
        again = _fill(cache, "p@aaaaaaaaaaaaaaaa:float32", "policy", ["a", "b", "c", "d"],
                      monkeypatch, "probe@1")  # fmt: skip
        assert again.stats()["cache_hits"] == 3
    res = CliRunner().invoke(cache_group, ["stats", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["entries"] == 5
    assert {g["role"]: g["entries"] for g in st["by_role"]} == {"policy": 4, "judge": 1}
    assert {g["stage"]: g["entries"] for g in st["by_stage"]} == {"probe@1": 4, "judge@1": 1}
    assert {g["model_id"][:1]: g["entries"] for g in st["by_model"]} == {"p": 4, "j": 1}
    assert sum(g["bytes"] for g in st["by_role"]) == st["bytes"] > 0
    last = {(r["stage"], r["role"]): r for r in st["last_runs"]}
    assert set(last) == {("probe@1", "policy"), ("judge@1", "judge")}
    assert last[("probe@1", "policy")]["hits"] == 3 and last[("probe@1", "policy")]["misses"] == 1
    assert last[("probe@1", "policy")]["hit_rate"] == pytest.approx(0.75)
    assert st["last_run_hit_rate"] == pytest.approx(3 / 5)
    text = CliRunner().invoke(cache_group, ["stats"]).output
    assert "probe@1" in text and "75.0%" in text and "by role:" in text


def test_prune_by_fingerprint_keeps_exactly_what_it_says(project, monkeypatch):
    now_1 = _checkpoint(project / "data/iter_1/model", b"weights of iteration 1, retrained")
    now_2 = _checkpoint(project / "data/iter_2/model", b"weights of iteration 2")
    fp1, fp2 = model_fingerprint(now_1), model_fingerprint(now_2)
    stale = "0123456789abcdef"
    path = project / ".cache/looptool" / CACHE_FILE
    with RequestCache(path) as cache:
        _fill(cache, f"data/iter_1/model@{stale}:float32", "policy", ["a", "b"], monkeypatch, "p1")
        _fill(cache, f"data/iter_1/model@{fp1}:float32", "policy", ["a"], monkeypatch, "p1")
        _fill(cache, f"{project}/data/iter_2/model@{fp2}:bfloat16", "policy", ["c"],
              monkeypatch, "p2")  # fmt: skip
        _fill(cache, f"data/iter_3/model@{stale}:float32", "policy", ["d"], monkeypatch, "p3")
        _fill(cache, f"data/tiny_model@{stale}:float32", "judge", ["e"], monkeypatch, "j1")
        _fill(cache, "qwen@http://127.0.0.1:8000/v1[x]", "judge", ["f"], monkeypatch, "j1")
    before = _keys(path)
    keep = {k for k, m in before.items() if stale not in m or m.startswith("data/tiny_model")}
    assert len(before) == 7 and len(keep) == 4

    args = ["prune", "--keep-fingerprints-of", "data/iter_*/model"]
    dry = CliRunner().invoke(cache_group, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 entries" in dry.output and "kept 4 entries" in dry.output
    assert _keys(path) == before  # a dry run deletes nothing

    res = CliRunner().invoke(cache_group, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["kept"] == 4 and out["deleted"] == 3 and out["deleted_by"] == {"fingerprint": 3}
    assert out["kept_fingerprints"] == {"data/iter_*/model": sorted([fp1, fp2])}
    assert set(_keys(path)) == keep
    assert out["bytes_on_disk_after"] <= out["bytes_on_disk_before"]


def test_prune_by_age_then_size_keeps_the_most_recently_used(project, monkeypatch):
    path = project / ".cache/looptool" / CACHE_FILE
    with RequestCache(path) as cache:
        _fill(cache, "m@aaaaaaaaaaaaaaaa:float32", "policy", list("abcdef"), monkeypatch, "s")
        sizes = dict(cache._conn.execute(
            "SELECT key, length(key) + length(CAST(response AS BLOB)) FROM requests"))  # fmt: skip
        order = sorted(sizes)  # give every entry its own last-use time: order[0] newest
        now = time.time()
        with cache._conn:
            for age_days, key in enumerate(order):
                cache._conn.execute(
                    "UPDATE entry_meta SET used = ? WHERE key = ?", (now - age_days * 86400, key)
                )
    # older than 3.5 days: the two oldest (4 and 5 days) go
    res = CliRunner().invoke(cache_group, ["prune", "--older-than", "3.5d"])
    assert res.exit_code == 0, res.output
    assert set(_keys(path)) == set(order[:4]) and "deleted 2 entries" in res.output
    # the newest entries that fit in the limit stay, the rest go (least recently used first)
    limit = sizes[order[0]] + sizes[order[1]] + sizes[order[2]] // 2
    res = CliRunner().invoke(cache_group, ["prune", "--max-bytes", str(limit), "--json"])
    assert res.exit_code == 0, res.output
    assert set(_keys(path)) == set(order[:2])
    assert json.loads(res.output)["kept_bytes"] == sizes[order[0]] + sizes[order[1]] <= limit


def test_prune_bad_input_is_one_line(project):
    (project / ".cache/looptool").mkdir(parents=True)
    RequestCache(project / ".cache/looptool" / CACHE_FILE).close()
    for args, flag in (
        (["--max-bytes", "lots"], "--max-bytes"),
        (["--older-than", "7 days"], "--older-than"),
        ([], "--keep-fingerprints-of"),
    ):
        res = CliRunner().invoke(cache_group, ["prune", *args])
        assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
        assert flag in res.output and res.output.count("\n") == 1, res.output
    assert parse_size("2GB") == 2_000_000_000 and parse_size("1GiB") == 1 << 30
    res = CliRunner().invoke(cache_group, ["stats", "--cache-dir", str(project / "nowhere")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "no cache at" in res.output


# a stage that runs until the test lets it finish (touches `go`)
WAIT_STAGE = (
    "import pathlib, time\n"
    "pathlib.Path('started').write_text('1')\n"
    "while not pathlib.Path('go').exists():\n"
    "    time.sleep(0.1)\n"
    "pathlib.Path('out.txt').write_text('done')\n"
)


def test_prune_is_refused_while_a_repro_runs(project, monkeypatch):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project,
                   check=True)  # fmt: skip
    (project / "wait.py").write_text(WAIT_STAGE)
    (project / "dvc.yaml").write_text(
        "stages:\n  slow:\n    cmd: python wait.py\n    deps: [wait.py]\n    outs: [out.txt]\n"
    )
    path = project / ".cache/looptool" / CACHE_FILE
    with RequestCache(path) as cache:
        _fill(cache, "m@aaaaaaaaaaaaaaaa:float32", "policy", ["a", "b"], monkeypatch, "s")
    before = _keys(path)
    repro = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-q"], cwd=project)
    try:
        deadline = time.time() + 120
        while not (project / "started").exists():
            assert repro.poll() is None and time.time() < deadline, "the stage never started"
            time.sleep(0.1)
        for cmd in (["prune", "--max-bytes", "0"], ["clear", "--yes"]):
            res = CliRunner().invoke(cache_group, cmd)
            assert res.exit_code == 1, res.output
            assert f"a repro is running in {project}: PID " in res.output
            assert res.output.count("\n") == 1
            assert _keys(path) == before
    finally:
        (project / "go").write_text("1")
        assert repro.wait(timeout=120) == 0
    res = CliRunner().invoke(cache_group, ["prune", "--max-bytes", "0"])
    assert res.exit_code == 0 and "deleted 2 entries" in res.output, res.output
    assert _keys(path) == {}


def test_a_cache_opened_by_this_code_still_takes_older_codes_writes(project, monkeypatch):
    """The new bookkeeping lives beside `requests`: a stage running the code before #29
    (positional INSERT of 6 columns, no entry_meta) keeps writing to the same file."""
    path = project / ".cache/looptool" / CACHE_FILE
    with RequestCache(path) as cache:
        _fill(cache, "m@aaaaaaaaaaaaaaaa:float32", "policy", ["a"], monkeypatch, "s")
    with sqlite3.connect(path) as con:
        con.execute(
            "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?, ?)",
            ("old-key", "generate", "hf", "m@aaaaaaaaaaaaaaaa:float32", '[{"text": "x"}]', 0.0),
        )
    res = CliRunner().invoke(cache_group, ["stats", "--json"])
    st = json.loads(res.output)
    assert st["entries"] == 2 and {g["role"] for g in st["by_role"]} == {"policy", None}
    res = CliRunner().invoke(cache_group, ["prune", "--older-than", "1d"])  # the old one
    assert res.exit_code == 0 and "deleted 1 entries" in res.output, res.output
    assert "old-key" not in _keys(path)
