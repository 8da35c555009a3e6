"""DVC stage `build_tiny_model`: the tiny random Qwen3 + tokenizer -> engines.tiny_model.out.

python -m stages.build_tiny_model [--params params.yaml]
"""

from __future__ import annotations

from looptool.loop.tiny_model import build_tiny_model
from stages._common import stage_params


def main(argv: list[str] | None = None) -> None:
    params = stage_params(argv)
    spec = params.engines.tiny_model
    out = build_tiny_model(spec.out, params=spec, date=params.project.date)
    print(f"built {out}")


if __name__ == "__main__":
    main()
