"""DVC stage seed_dialogues: see looptool.seed.pipeline.run_dialogues."""

import sys

from looptool.seed.pipeline import run_dialogues, stage_main

if __name__ == "__main__":
    sys.exit(stage_main("seed_dialogues", run_dialogues))
