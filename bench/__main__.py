"""`python -m bench`: run every bench/*.py module's main() in name order."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"bench.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            continue
        print(f"== {path.stem} ==", flush=True)
        module.main()
        print(flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
