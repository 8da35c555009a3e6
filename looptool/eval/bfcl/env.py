"""A BFCL multi-turn environment: the official classes of one entry, driven by validated calls.

A call (from a ``<tool_call>`` block or a BFCL call string) is never evaluated: its name
must be a public method of one of the entry's classes, its arguments literal JSON values
that bind to the method's signature. Only then is the bound method called with keyword
arguments. The validated call is re-rendered as ``name(k=<literal>, ...)``, the only form
handed to the official checker (which runs call strings through ``eval``).
"""

from __future__ import annotations

import copy
import inspect
import json
import keyword
import math
from dataclasses import dataclass
from typing import Any

from looptool.eval.bfcl import official
from looptool.eval.bfcl.decode import DecodeError, parse_python_call_parts

_MAX_DEPTH = 32


class CallRejected(ValueError):
    """A call that is not run: the message is the reason recorded for the step."""


@dataclass(frozen=True)
class EnvCall:
    """A validated call: a public method of the environment and literal keyword arguments."""

    name: str
    kwargs: dict[str, Any]

    def render(self) -> str:
        """``name(k=<Python literal>, ...)``: repr of JSON values is a plain literal."""
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


def _check_literal(value: Any, where: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise CallRejected(f"{where}: value nested too deeply")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CallRejected(f"{where}: non-finite number {value!r}")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_literal(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CallRejected(f"{where}: object keys must be strings")
            _check_literal(v, f"{where}[{k!r}]", depth + 1)
        return
    raise CallRejected(f"{where}: not a literal value ({type(value).__name__})")


def _result_text(value: Any) -> str:
    # the official executor's conversion, so tool messages and checker results agree
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class BfclEnvironment:
    """The entry's environment instances, loaded with its initial config."""

    def __init__(
        self, involved_classes: list[str], initial_config: dict, long_context: bool = False
    ) -> None:
        self.instances: dict[str, Any] = {}
        self._methods: dict[str, Any] = {}
        for class_name in involved_classes:
            cls, stateless = official.environment_class(class_name)
            inst = cls()
            if not stateless:
                inst._load_scenario(
                    copy.deepcopy(initial_config.get(class_name, {})), long_context=long_context
                )
            self.instances[class_name] = inst
            # later classes win a shared name, as in the official name -> instance mapping
            for name, method in inspect.getmembers(inst, predicate=inspect.ismethod):
                if not name.startswith("_"):
                    self._methods[name] = method

    @property
    def method_names(self) -> list[str]:
        return sorted(self._methods)

    def resolve(self, name: Any, kwargs: Any, positional: list | None = None) -> EnvCall:
        """Validate one call; raises CallRejected with the reason."""
        if not isinstance(name, str) or not name.isidentifier():
            raise CallRejected(f"{name!r} is not a plain method name")
        if name.startswith("_"):
            raise CallRejected(f"{name!r}: private and dunder names are refused")
        method = self._methods.get(name)
        if method is None:
            raise CallRejected(f"unknown method {name!r}: not a public method of the environment")
        if not isinstance(kwargs, dict):
            raise CallRejected(f"{name}: arguments must be an object")
        for k, v in kwargs.items():
            if not isinstance(k, str) or not k.isidentifier() or keyword.iskeyword(k):
                raise CallRejected(f"{name}: {k!r} is not a valid argument name")
            if k.startswith("_"):
                raise CallRejected(f"{name}: argument {k!r}: private names are refused")
            _check_literal(v, f"{name}({k}=...)")
        positional = positional or []
        for i, v in enumerate(positional):
            _check_literal(v, f"{name} argument {i}")
        sig = inspect.signature(method)
        try:
            bound = sig.bind(*positional, **kwargs)
        except TypeError as exc:
            raise CallRejected(f"{name}{sig}: {exc}") from None
        if positional and any(
            p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values()
        ):
            raise CallRejected(f"{name}: positional arguments to a method with *args/**kwargs")
        return EnvCall(name, dict(bound.arguments) if positional else dict(kwargs))

    def resolve_text(self, text: str) -> list[EnvCall]:
        """Validate a BFCL call string (``f(a=1)`` or ``[f(a=1), g(2)]``), parsed with ast."""
        try:
            parts = parse_python_call_parts(text)
        except DecodeError as exc:
            raise CallRejected(f"{text[:80]!r}: {exc}") from None
        return [self.resolve(name, args, positional) for name, positional, args in parts]

    def execute(self, call: EnvCall) -> str:
        """Run a validated call; an exception becomes the official error text."""
        try:
            return _result_text(self._methods[call.name](**call.kwargs))
        except Exception as exc:  # the environment's own errors are results, as upstream
            return f"Error during execution: {exc}"
