"""DVC stage seed_apis: see looptool.seed.pipeline.run_apis."""

import sys

from looptool.seed.pipeline import run_apis, stage_main

if __name__ == "__main__":
    sys.exit(stage_main("seed_apis", run_apis))
