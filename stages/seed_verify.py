"""DVC stage seed_verify: see looptool.seed.pipeline.run_verify."""

import sys

from looptool.seed.pipeline import run_verify, stage_main

if __name__ == "__main__":
    sys.exit(stage_main("seed_verify", run_verify))
