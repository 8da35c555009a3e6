"""The official BFCL code (PyPI ``bfcl-eval``, installed with ``--no-deps``): the one place
that imports it.

Only modules whose imports we already satisfy are loaded: the multi-turn environments
(``func_source_code``), the multi-turn checker, the AST checker and the score helpers.
``bfcl_eval.constants.model_config`` imports every vendor SDK handler, and the checkers
read one thing from it (``MODEL_CONFIG_MAPPING[name].underscore_to_dot``), so a small
stand-in module is registered under its name before anything imports it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = "bfcl-eval"
PINNED_VERSION = "2026.3.23"
# Model names handed to the official checkers; the second makes them expect '.' -> '_'.
MODEL_NAME = "looptool"
MODEL_NAME_DOT_TO_UNDERSCORE = "looptool-dot-to-underscore"


class BfclEvalMissing(RuntimeError):
    """bfcl-eval is not installed (message says how to install it)."""


@dataclass(frozen=True)
class _ModelConfig:
    underscore_to_dot: bool


def _install_model_config_stub() -> None:
    name = "bfcl_eval.constants.model_config"
    if name in sys.modules:
        return
    stub = types.ModuleType(name)
    stub.__doc__ = "looptool stand-in: the real module imports every vendor SDK."
    stub.MODEL_CONFIG_MAPPING = {  # type: ignore[attr-defined]
        MODEL_NAME: _ModelConfig(underscore_to_dot=False),
        MODEL_NAME_DOT_TO_UNDERSCORE: _ModelConfig(underscore_to_dot=True),
    }
    sys.modules[name] = stub


def version() -> str:
    """The installed bfcl-eval version. Raises BfclEvalMissing when it is absent."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise BfclEvalMissing(
            f"{PACKAGE} is not installed: pip install --no-deps {PACKAGE}=={PINNED_VERSION} "
            "(make venv does this)"
        ) from None


@cache
def module(name: str) -> Any:
    """``bfcl_eval.<name>`` imported with the model_config stand-in in place."""
    version()
    _install_model_config_stub()
    return importlib.import_module(f"bfcl_eval.{name}")


def data_dir() -> Path:
    """The installed package's data dir (every v4 category, multi-turn function docs)."""
    return Path(module("constants.eval_config").PROMPT_PATH)


def multi_turn_func_doc_path(class_name: str) -> Path:
    """The function-doc file of one multi-turn environment class."""
    cfg = module("constants.executable_backend_config")
    try:
        fname = cfg.MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
    except KeyError:
        raise KeyError(f"unknown BFCL environment class {class_name!r}") from None
    return data_dir() / "multi_turn_func_doc" / fname


def environment_class(class_name: str) -> tuple[type, bool]:
    """(class, stateless) for a multi-turn environment class name."""
    cfg = module("constants.executable_backend_config")
    try:
        mod_name = cfg.CLASS_FILE_PATH_MAPPING[class_name]
    except KeyError:
        raise KeyError(f"unknown BFCL environment class {class_name!r}") from None
    mod = importlib.import_module(mod_name)
    return getattr(mod, class_name), class_name in cfg.STATELESS_CLASSES


def max_steps_per_turn() -> int:
    """The official step limit per turn (the entry is force-terminated past it)."""
    return int(module("constants.default_prompts").MAXIMUM_STEP_LIMIT)


def additional_function_prompt() -> str:
    """The user message the official FC runner sends when held-out functions are added."""
    return str(module("constants.default_prompts").DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC)
