"""Every stage's code is a DVC dependency of that stage, so editing it reruns the stage.

dvc.yaml's deps are written by hand; this test reads each stage's Python imports (module
level and inside functions, transitively from ``python -m stages.<name>``) and the prompt
files the code loads, and fails naming the stage and the file DVC would not see change.

The policy, by package:

- ``stages/``, ``looptool/{core,seed,loop,eval,prompts}``: the logic that decides a
  stage's rows. Every module reached must be covered by a dep (the file or a folder
  holding it); so must every ``looptool/prompts/<name>.txt`` passed to ``load_prompt``.
- ``looptool/engines``: a stage that opens an engine (imports ``stages._engines``)
  depends on the whole folder (which backend runs is a param). Elsewhere the imports are
  types and the request protocol, which do not decide rows.
- ``looptool/params``: the values a stage reads are tracked by its ``params:`` keys.
  A default changed in code is not seen by DVC; set the key in params.yaml instead.
- ``looptool/store``: file plumbing (atomic writes, Parquet I/O); a change there changes
  how bytes are written, not which rows.
- Package ``__init__.py`` files holding only a docstring (the others are checked).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("stages/", "looptool/core/", "looptool/seed/", "looptool/loop/", "looptool/eval/",
           "looptool/prompts/")  # fmt: skip


def module_file(name: str) -> Path | None:
    """The file of a project module (``pkg/__init__.py`` for a package), else None."""
    path = ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


@cache
def direct_imports(path: Path, package: str) -> tuple[frozenset[str], frozenset[str]]:
    """(project modules ``path`` imports anywhere in it, prompt names it loads)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mods: set[str] = set()
    prompts: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            mods.add(base)
            mods.update(f"{base}.{a.name}" for a in node.names)  # a submodule, if one
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_prompt"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            prompts.add(node.args[0].value)
    ours = {m for m in mods if m.split(".")[0] in ("looptool", "stages")}
    return frozenset(ours), frozenset(prompts)


def closure(module: str) -> set[str]:
    """Repo-relative files a stage module runs: its project imports, transitively, the
    packages they sit in, and the prompt files loaded by name."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or (rel := str(path.relative_to(ROOT))) in seen:
            continue
        seen.add(rel)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        mods, prompts = direct_imports(path, package)
        todo.extend(mods)
        seen.update(f"looptool/prompts/{p}.txt" for p in prompts)
    return seen


def docstring_only(rel: str) -> bool:
    body = ast.parse((ROOT / rel).read_text(encoding="utf-8")).body
    return all(
        isinstance(n, ast.Expr)
        and isinstance(n.value, ast.Constant)
        or isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        for n in body
    )


def must_cover(rel: str, opens_engines: bool) -> bool:
    if rel.endswith("__init__.py") and docstring_only(rel):
        return False
    if rel.startswith("looptool/engines/"):
        return opens_engines
    return rel.startswith(CHECKED)


def stages() -> list[tuple[str, str, list[str]]]:
    """(stage name, its python module, its deps) for every stage of dvc.yaml."""
    out = []
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        module = body["cmd"].split(" -m ", 1)[1].split()[0]
        out.append((name, module, [str(d) for d in body.get("deps", [])]))
    return out


def uncovered(module: str, deps: list[str]) -> list[str]:
    files = closure(module)
    opens_engines = "stages/_engines.py" in files

    def covered(rel: str) -> bool:
        return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)

    return sorted(f for f in files if must_cover(f, opens_engines) and not covered(f))


STAGES = stages()


@pytest.mark.parametrize(("stage", "module", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_deps_cover_the_code_it_runs(stage: str, module: str, deps: list[str]) -> None:
    missing = uncovered(module, deps)
    assert not missing, f"dvc.yaml stage {stage!r}: add to its deps: {', '.join(missing)}"


def test_the_check_sees_lazy_imports_and_prompt_files() -> None:
    """The closure follows an import inside a function and a load_prompt literal: the
    expand stage reaches the EDDE prompts and the seed vocabulary its values come from."""
    files = closure("stages.expand")
    assert {"looptool/prompts/edde_user.txt", "looptool/seed/vocab.py"} <= files
    assert "looptool/engines/backends/hf.py" in files  # factory imports it lazily
    assert uncovered("stages.expand", ["stages/expand.py"])  # a short dep list fails
