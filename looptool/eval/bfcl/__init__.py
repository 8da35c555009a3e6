"""BFCL evaluation: data, single- and multi-turn scoring, official checkers, policy run, CLI."""
