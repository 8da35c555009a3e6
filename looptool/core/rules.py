"""Schema rules (tier-1 verification): is a call valid against the tools it may use?

Checks: the function exists; required params present; no unknown params; value types
and enums per the JSON schema, nested arrays/objects included. Each failure is a
:class:`Violation` naming the call, the parameter path and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jsonschema

from looptool.core.types import ToolCall, ToolSpec, canonical_json

_VALIDATOR = jsonschema.Draft202012Validator
# Python's bool is an int subclass; JSON-schema "integer"/"number" must not take true.
_TYPE_CHECKER = _VALIDATOR.TYPE_CHECKER.redefine_many(
    {
        "integer": lambda _c, v: (
            not isinstance(v, bool)
            and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
        ),
        "number": lambda _c, v: not isinstance(v, bool) and isinstance(v, int | float),
    }
)
_Strict = jsonschema.validators.extend(_VALIDATOR, type_checker=_TYPE_CHECKER)

_RULE_OF = {
    "required": "missing_required",
    "additionalProperties": "unknown_param",
    "type": "type",
    "enum": "enum",
    "const": "enum",
}


@dataclass(frozen=True)
class Violation:
    call_index: int
    name: str
    rule: str  # unknown_function | missing_required | unknown_param | type | enum | schema
    param: str  # dotted path inside the arguments ("" for the call itself)
    message: str

    def to_json(self) -> dict:
        return {
            "call": self.call_index,
            "name": self.name,
            "rule": self.rule,
            "param": self.param,
            "message": self.message,
        }


@lru_cache(maxsize=4096)
def _validator_for(params_json: str) -> jsonschema.protocols.Validator:
    import json

    schema = json.loads(params_json)
    # Unknown top-level params are an error even when the spec did not say so.
    schema.setdefault("additionalProperties", False)
    return _Strict(schema)


def _path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(missing)
    elif error.validator == "additionalProperties":
        extra = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(extra)
    return ".".join(p for p in parts if p)


def check_call(call: ToolCall, tools: dict[str, ToolSpec], index: int = 0) -> list[Violation]:
    """Violations of one call against the tools available (by name)."""
    spec = tools.get(call.name)
    if spec is None:
        return [Violation(index, call.name, "unknown_function", "", f"no tool named {call.name!r}")]
    validator = _validator_for(canonical_json(spec.parameters))
    out = []
    for err in sorted(validator.iter_errors(call.arguments), key=lambda e: list(e.absolute_path)):
        # additionalProperties reports several names in one message; split them.
        if err.validator == "additionalProperties":
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                prefix = ".".join(str(p) for p in err.absolute_path)
                path = f"{prefix}.{extra}" if prefix else extra
                out.append(
                    Violation(
                        index, call.name, "unknown_param", path, f"unknown parameter {path!r}"
                    )
                )
            continue
        rule = _RULE_OF.get(str(err.validator), "schema")
        out.append(Violation(index, call.name, rule, _path(err), err.message))
    return out


def check_calls(
    calls: list[ToolCall], tools: list[ToolSpec] | dict[str, ToolSpec]
) -> list[Violation]:
    """Violations of every call; an empty list means all calls are schema-valid."""
    by_name = tools if isinstance(tools, dict) else {t.name: t for t in tools}
    out: list[Violation] = []
    for i, call in enumerate(calls):
        out.extend(check_call(call, by_name, i))
    return out
