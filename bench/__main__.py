"""`python -m bench`: run every bench/*.py module's main() in name order, except the ones
that set ``ON_REQUEST = True`` (hours of work, e.g. paper_scale); `python -m bench NAME
[ARGS...]` runs one module with its own arguments (`python -m bench paper_scale --help`)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, args: list[str]) -> None:
    if inspect.signature(module.main).parameters:
        module.main(args)
    elif args:
        sys.exit(f"{module.__name__} takes no arguments")
    else:
        module.main()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))  # bench.* helpers and looptool from this checkout
    if argv:
        path = here / f"{argv[0]}.py"
        if argv[0].startswith("_") or not path.is_file():
            names = sorted(p.stem for p in here.glob("*.py") if not p.name.startswith("_"))
            sys.exit(f"no benchmark {argv[0]!r}; one of: {', '.join(names)}")
        _run(_load(path), argv[1:])
        return
    for path in sorted(here.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _load(path)
        if not callable(getattr(module, "main", None)):
            continue
        if getattr(module, "ON_REQUEST", False):
            print(f"== {path.stem} == skipped (on request: python -m bench {path.stem})\n")
            continue
        print(f"== {path.stem} ==", flush=True)
        _run(module, [])
        print(flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
