"""DVC stage seed_samples: see looptool.seed.stage_samples.run_samples."""

import sys

from looptool.seed.pipeline import stage_main
from looptool.seed.stage_samples import run_samples

if __name__ == "__main__":
    sys.exit(stage_main("seed_samples", run_samples))
