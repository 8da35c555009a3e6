"""The manual: README.md as the front door, docs/ built by MkDocs, offline, examples that run.

`mkdocs build --strict` fails on a broken internal link or anchor and on a page missing
from the nav (mkdocs.yml's `validation`). The built site must load nothing from the
network: a static scan of every page and stylesheet, and, where headless Chromium is
there (tests/browser_cdp.py, as for the report), real page loads with networking blocked.
Every shell or SQL block marked `<!-- runnable -->` in README.md or docs/*.md runs against
a store shaped like the CPU default's outputs (tests/store_synth.py), so an example that
rots fails here (docs/development.md, "Runnable examples").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from browser_cdp import Browser, ensure_chromium, file_url
from store_synth import add_report_inputs, build

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MARKER = "<!-- runnable -->"
README_MAX_LINES = 200
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
# a URL the browser would fetch from somewhere else: a scheme (http:, https:, ftp: ...) or
# protocol-relative //host; relative paths, #anchors and data: URIs stay on the page
EXTERNAL = re.compile(r"^\s*(?!data:)([a-z][a-z0-9+.-]*:|//)", re.I)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    runnable: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Fenced blocks in order; `runnable` when the line before the fence is the marker.
    Fences nest as in CommonMark: a block closes only on a fence of its own character at
    least as long, so an example of the marker inside a longer fence is not run."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).strip()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        runnable = i > 0 and lines[i - 1].strip() == MARKER
        lang = info.split()[0] if info else ""
        blocks.append(Block(path, i + 1, lang, "\n".join(lines[i + 1 : j]), runnable))
        i = j + 1
    return blocks


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


RUNNABLE = [b for p in markdown_files() for b in fenced_blocks(p) if b.runnable]


# --- README: the front door ---------------------------------------------------------


def test_readme_starts_with_the_two_commands_ci_runs() -> None:
    first = fenced_blocks(README)[0]
    commands = [ln.split("#")[0].strip() for ln in first.code.split("\n")]
    commands = [c for c in commands if c]
    assert commands == ["make run", "make test"], commands
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().split("\n")]
    ci = [ln for ln in ci if ln and not ln.startswith("#")]
    assert ci[-1] == commands[1], f".ci/run must run the README's test command: {ci[-1]!r}"
    before = README.read_text(encoding="utf-8").split(first.code)[0]
    assert before.count("\n## ") == 0, "the two commands come before any section"


def test_readme_stays_a_front_door() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines: move detail into docs/"


def test_markers_precede_runnable_blocks() -> None:
    for path in markdown_files():
        lines = path.read_text(encoding="utf-8").split("\n")
        starts = {b.line for b in fenced_blocks(path) if b.runnable}
        for k, line in enumerate(lines, start=1):
            if line.strip() == MARKER and not _inside_fence(path, k):
                assert k + 1 in starts, f"{path.name}:{k}: {MARKER} must be followed by a fence"
    assert {b.lang for b in RUNNABLE} <= {"bash", "sql"}, {b.lang for b in RUNNABLE}
    assert any(b.path == README for b in RUNNABLE), "README's where-to-look block runs"


def _inside_fence(path: Path, line: int) -> bool:
    for b in fenced_blocks(path):
        if b.line < line <= b.line + b.code.count("\n") + 1:
            return True
    return False


# source paths the text names (`looptool/store/output_guard.py`, `tests/test_x.py`, ...)
SOURCE_PATH = re.compile(
    r"(?<![\w./-])((?:looptool|stages|tests|bench|scripts|configs|vendor)/[\w./{},*-]*[\w/}])"
)


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [x for alt in m.group(1).split(",") for x in _expand_braces(
        path[: m.start()] + alt + path[m.end() :])]  # fmt: skip


def test_source_paths_named_exist() -> None:
    """A file or folder of the repository that the manual names is there (a moved module
    fails here until the text follows it)."""
    missing = []
    for md in markdown_files():
        for path in SOURCE_PATH.findall(md.read_text(encoding="utf-8")):
            for p in _expand_braces(path):
                if "*" in p:
                    found = any(REPO.glob(p))
                else:
                    found = (REPO / p).exists()
                if not found:
                    missing.append(f"{md.relative_to(REPO)}: {p}")
    assert not missing, "\n".join(missing)


def test_layout_lists_every_package_folder() -> None:
    """docs/development.md "Layout" names every folder of looptool/ (and nothing gone)."""
    text = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed = {line.split()[0].rstrip("/") for line in block.splitlines() if line.strip()}
    folders = {
        str(d.relative_to(REPO))
        for d in (REPO / "looptool").rglob("*")
        if d.is_dir() and (d / "__init__.py").exists()
    }
    assert not folders - listed, f"Layout misses {sorted(folders - listed)}"
    stale = {f for f in listed if f.startswith("looptool/") and not (REPO / f.rstrip(",")).exists()}
    assert not stale, f"Layout names folders that are gone: {sorted(stale)}"


# --- the site: strict build, offline ------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
           "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(out)]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in DOCS.rglob("*.md"):
        html = site / page.relative_to(DOCS).with_suffix(".html")
        assert html.is_file(), f"{page.name} was not built"


class _Loads(HTMLParser):
    """Every URL an HTML page makes the browser fetch (links to navigate to excluded)."""

    ATTRS = {"src", "data", "poster", "background"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "srcset":
                self.urls += [u.strip().split(" ")[0] for u in value.split(",")]
            elif name in self.ATTRS:
                self.urls.append(value)
            elif name == "href" and tag == "link":
                self.urls.append(value)
            elif name == "style":
                self.urls += _css_urls(value)
        self._style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._style:
            self.urls += _css_urls(data)

    def handle_endtag(self, tag: str) -> None:
        self._style = False


def _css_urls(css: str) -> list[str]:
    found = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    found += re.findall(r"@import\s+['\"]([^'\"]+)", css)
    return found


def test_site_loads_nothing_from_the_network(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= len(list(DOCS.rglob("*.md")))
    for page in pages:
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        external = [u for u in parser.urls if EXTERNAL.match(u)]
        assert not external, f"{page.relative_to(site)} loads {external}"
        assert "fonts.googleapis" not in page.read_text(encoding="utf-8")
    for css in site.rglob("*.css"):
        external = [u for u in _css_urls(css.read_text(encoding="utf-8")) if EXTERNAL.match(u)]
        assert not external, f"{css.relative_to(site)} loads {external}"


@pytest.fixture(scope="module")
def chromium() -> str:
    binary, why = ensure_chromium()
    if binary is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    return binary


SEARCH = """new Promise(done => {
  const q = document.querySelector('input[data-md-component=search-query]');
  const meta = () => document.querySelector('.md-search-result__meta').textContent.trim();
  let tries = 0;
  const ask = () => {
    q.focus();
    q.value = 'lineage';
    q.dispatchEvent(new Event('input', {bubbles: true}));
    q.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true, key: 'e'}));
  };
  const poll = setInterval(() => {
    tries++;
    const found = document.querySelectorAll('.md-search-result__item').length;
    if (found > 0 || tries > 100) {
      clearInterval(poll);
      done(JSON.stringify({found, meta: meta(), nav: document.querySelectorAll('nav a').length}));
    } else if (tries % 10 === 0) ask();
  }, 100);
  ask();
})"""


def test_site_opens_offline_in_a_browser(site: Path, chromium: str) -> None:
    """Each page: every request is a file of the site (or a data: URI); search works."""
    with Browser(chromium) as b:
        for name in ("index.html", "data.html", "results.html"):
            page = b.load(file_url(site / name), SEARCH)
            outside = [u for u in page.requests
                       if not u.startswith("data:") and not u.startswith(file_url(site))]  # fmt: skip
            assert outside == [], f"{name} requested {outside}"
            assert page.console_errors == [] and page.exceptions == [], (
                page.console_errors,
                page.exceptions,
            )
            assert page.evaluated["found"] > 0, (
                f"{name}: offline search found nothing: {page.evaluated}"
            )
            assert page.evaluated["nav"] >= len(list(DOCS.glob("*.md")))


def test_readme_links_resolve(site: Path) -> None:
    """README's relative links name files that exist; a docs/ link's #anchor is a heading."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if EXTERNAL.match(link):
            continue
        target, _, anchor = link.partition("#")
        assert (REPO / target).exists(), f"README links to missing {target}"
        if anchor and target.startswith("docs/") and target.endswith(".md"):
            html = (site / Path(target).relative_to("docs").with_suffix(".html")).read_text()
            assert f'id="{anchor}"' in html, f"README links to {link}: no such heading"


# --- runnable examples --------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store shaped like the CPU default's outputs (3 iterations: D_1..D_4) and the id
    of a sample the judge relabeled in iteration 1 (`<sample_id>` in examples)."""
    root = tmp_path_factory.mktemp("store")
    build(root, iters=3)
    add_report_inputs(root, iters=3)
    verdicts = pl.read_parquet(root / "data" / "iter_1" / "verdicts.parquet")
    relabeled = verdicts.filter(pl.col("verdict") == "LABEL_WRONG")["sample_id"]
    assert relabeled.len() > 0
    return root, relabeled[0]


def _console_script() -> str:
    """`module:function` of the `looptool` command, as pyproject.toml declares it."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    return meta["project"]["scripts"]["looptool"]


def _workdir(store: Path, tmp: Path) -> tuple[Path, dict[str, str]]:
    """A fresh copy of the store, a `looptool` and `python` of this checkout first on PATH
    (also after `source .venv/bin/activate`), the Hugging Face hub offline."""
    work = tmp / "project"
    shutil.copytree(store, work)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    module, func = _console_script().split(":")
    shim = bin_dir / "looptool"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from {module} import {func}; '
                    f"{func}(prog_name='looptool')\" \"$@\"\n")  # fmt: skip
    shim.chmod(0o755)
    python = bin_dir / "python"  # not a symlink: a venv's python finds its venv by its path
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    activate = work / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'export PATH="{bin_dir}:$PATH"\n')
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"),
        "LOOPTOOL_CACHE_DIR": str(tmp / "cache"),
    }
    return work, env


def _sql_statements(code: str) -> list[str]:
    lines = [ln for ln in code.split("\n") if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_runnable_example(block: Block, store: tuple[Path, str], tmp_path: Path) -> None:
    root, sample_id = store
    work, env = _workdir(root, tmp_path)
    code = block.code.replace("<sample_id>", sample_id)
    if block.lang == "sql":
        runs = [["looptool", "sql", stmt] for stmt in _sql_statements(code)]
        assert runs, f"{block.id}: no SQL statement"
    else:
        runs = [["bash", "-euo", "pipefail", "-c", code]]
    for cmd in runs:
        res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                             timeout=600, check=False)  # fmt: skip
        assert res.returncode == 0, (
            f"{block.id} failed ({res.returncode}):\n{code}\n--- stdout\n{res.stdout[-3000:]}"
            f"\n--- stderr\n{res.stderr[-3000:]}"
        )
