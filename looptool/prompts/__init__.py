"""Prompt templates (our own wording), loaded by name from this package."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_prompt(name: str) -> str:
    """The text of ``looptool/prompts/<name>.txt``."""
    return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
