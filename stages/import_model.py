"""DVC stage `import_model@<name>`: engines.imports[<name>] (a GGUF file inside an
installed distribution) -> a plain Hugging Face checkpoint at its `out` directory, plus
`<out>.import.json` (sha256 of the GGUF, source, tokenizer changes) as DVC metrics.

python -m stages.import_model --name NAME [--params params.yaml]
"""

from __future__ import annotations

import argparse
import sys

from looptool.engines.gguf_import import (
    ModelImportError,
    import_gguf,
    metrics_path,
    named_import,
)
from looptool.store.io import write_json_atomic
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="key of engines.imports")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = stage_params(argv)
    try:
        spec = named_import(params.engines.imports, args.name, args.params)
        result = import_gguf(spec)
    except ModelImportError as exc:
        sys.exit(f"error: import_model@{args.name}: {exc}")
    write_json_atomic(metrics_path(spec.out), result.manifest)
    print(f"imported {spec.distribution} {spec.file} -> {result.out}")


if __name__ == "__main__":
    main()
