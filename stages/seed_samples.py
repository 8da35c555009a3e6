"""DVC stage seed_samples: see looptool.seed.pipeline.run_samples."""

import sys

from looptool.seed.pipeline import run_samples, stage_main

if __name__ == "__main__":
    sys.exit(stage_main("seed_samples", run_samples))
