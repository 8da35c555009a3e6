"""A params profile (e.g. params.smol.yaml) as `dvc exp run -S` overrides on params.yaml.

DVC applies `-S` with Hydra's override grammar to params.yaml inside the experiment, so a
profile reaches every arm without touching the workspace's params.yaml: `++path=value`
sets or adds a leaf (Hydra merges dict values, so a dict that must be replaced whole is
deleted first), `~path` deletes what the profile does not have.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Keys usable as a dotted path segment in an override, and as a bare key inside {...}.
_PATH_KEY = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_\-]*|[0-9]+)$")
_DICT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Strings Hydra reads back unchanged without quotes (unless they spell a keyword)
_BARE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_/.\-]*$")
_KEYWORDS = {"true", "false", "null", "inf", "nan"}


class OverrideError(ValueError):
    """A value that Hydra's override grammar cannot carry unchanged."""


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Flatten nested dicts to path -> value; a dict that is empty or has a key that is not
    a path segment (e.g. iteration ``overrides`` with dotted keys) stays one value."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if not _PATH_KEY.match(str(key)):
            raise OverrideError(f"key {'.'.join(path)!r} cannot be addressed by `dvc exp run -S`")
        if isinstance(value, dict) and value and all(_PATH_KEY.match(str(k)) for k in value):
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


def encode_value(value: Any, where: str = "value") -> str:
    """``value`` in Hydra's override grammar (YAML-typed: null, bools, numbers, quoted
    strings, [lists], {dicts}); raises OverrideError where the grammar would change it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OverrideError(f"{where}: non-finite float {value!r}")
        # Hydra's exponent must not have a leading zero ('1e-06' would parse as a string)
        return re.sub(r"e([+-]?)0+(\d)", r"e\1\2", repr(value))
    if isinstance(value, str):
        if "${" in value or "\\" in value:
            raise OverrideError(f"{where}: string {value!r} (interpolation or backslash)")
        if _BARE.match(value) and value.lower() not in _KEYWORDS:
            return value  # a path or a name: readable without quotes
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(encode_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        bad = [k for k in value if not _DICT_KEY.match(str(k))]
        if bad:
            raise OverrideError(f"{where}: dict key {bad[0]!r} cannot be written in an override")
        return "{" + ", ".join(f"{k}: {encode_value(v, where)}" for k, v in value.items()) + "}"
    raise OverrideError(f"{where}: unsupported value type {type(value).__name__}")


def profile_overrides(base: dict, profile: dict) -> list[str]:
    """Overrides that turn params ``base`` into ``profile`` (deletions first, then sets).

    Exotic shapes (e.g. a profile leaf below a value the base holds as one dict) are not
    handled here: `check_overrides` applies the result with DVC's own code and compares.
    """
    have, want = _leaves(base), _leaves(profile)

    def under(path: tuple[str, ...], tree: dict) -> bool:  # a leaf of tree at or below path
        return any(p[: len(path)] == path for p in tree)

    deletions: list[str] = []
    for path in have:
        if under(path, want):
            continue
        # the highest ancestor the profile keeps nothing under
        top = next(path[:i] for i in range(1, len(path) + 1) if not under(path[:i], want))
        if f"~{'.'.join(top)}" not in deletions:
            deletions.append(f"~{'.'.join(top)}")
    sets: list[str] = []
    for path, value in want.items():
        dotted = ".".join(path)
        if path in have and json.dumps(have[path]) == json.dumps(value):
            continue
        # ++ merges a dict into the one there: replace it whole instead
        if under(path, have) and (isinstance(value, dict) or path not in have
                                  or isinstance(have[path], dict)):  # fmt: skip
            deletions.append(f"~{dotted}")
        sets.append(f"++{dotted}={encode_value(value, dotted)}")
    return deletions + sets


def check_overrides(base_file: Path, profile: dict, overrides: list[str]) -> None:
    """Apply ``overrides`` to a copy of ``base_file`` with DVC's own `-S` code and raise
    OverrideError unless the result reads back as ``profile`` (YAML 1.2, as DVC reads it)."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        shutil.copyfile(base_file, copy)
        try:
            apply_overrides(copy, overrides)
        except InvalidArgumentError as exc:
            raise OverrideError(f"DVC rejects the overrides: {exc.__cause__ or exc}") from None
        got = load_yaml(copy)
    if json.dumps(got, sort_keys=True) != json.dumps(profile, sort_keys=True):
        diff = sorted(
            ".".join(p) for p, v in _leaves(profile).items()
            if json.dumps(_leaves(got).get(p, _MISSING_JSON)) != json.dumps(v)
        )  # fmt: skip
        raise OverrideError(
            f"the overrides do not reproduce the profile at {diff[:5] or 'some keys'}"
        )


_MISSING_JSON = "<missing>"
