"""LoopTool: a reproducible data pipeline for the closed data-training loop (arXiv 2511.09148)."""

import warnings

# dvclive depends on the `pynvml` package, which is now a shim that warns on every
# `import pynvml` (torch imports it at start-up); its replacement, nvidia-ml-py, is
# installed with it. Keep that line out of every stage's log.
warnings.filterwarnings(
    "ignore", message="The pynvml package is deprecated", category=FutureWarning
)
