"""Core data types: tool specs, tool calls, chat messages, labels and samples.

Everything that is hashed or stored goes through :func:`canonical_json`, so the same
content always gives the same bytes (sorted keys, no whitespace, UTF-8 kept).
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from looptool.core.reply import reply_kind

JSON = Any


def canonical_json(obj: JSON) -> str:
    """Serialize to the one canonical JSON text used for hashing and storage."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_hash(obj: JSON, n: int = 16) -> str:
    """Short sha256 hex digest of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:n]


class ToolSpecError(ValueError):
    """A tool/function spec that cannot be normalized; the message names the problem."""


# BFCL and other loose dialects -> JSON-schema type ("any": any value). Other names are
# errors: a typo like "strng" must not become an unconstrained property.
_TYPE_ALIASES: dict[str, str | None] = {
    "string": "string",
    "str": "string",
    "char": "string",
    "character": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "short": "integer",
    "byte": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "tuple": "array",
    "list": "array",
    "arraylist": "array",
    "object": "object",
    "dict": "object",
    "hashmap": "object",
    "map": "object",
    "null": "null",
    "any": None,
}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


_CHECKED: collections.OrderedDict[str, str | None] = collections.OrderedDict()
_CHECKED_LOCK = threading.Lock()


def _schema_problem(params: dict) -> str | None:
    """Why a parameters schema is not a valid JSON schema (the metaschema check), or None.

    That check is most of the time a tool import takes (~1-2 ms a tool), and imported
    datasets repeat the same tools record after record: the answers of the last 4,096
    schemas (of up to 8 KB each as text) are kept, keyed by their ``repr`` (exact: a
    tuple and a list differ)."""
    key = repr(params)
    if len(key) <= 8192:
        with _CHECKED_LOCK:
            if key in _CHECKED:
                _CHECKED.move_to_end(key)
                return _CHECKED[key]
    try:
        jsonschema.Draft202012Validator.check_schema(params)
        problem = None
    except jsonschema.SchemaError as exc:
        problem = exc.message
    if len(key) <= 8192:
        with _CHECKED_LOCK:
            _CHECKED[key] = problem
            while len(_CHECKED) > 4096:
                _CHECKED.popitem(last=False)
    return problem


def normalize_schema(schema: JSON, where: str = "parameters") -> dict:
    """Return a canonical JSON-schema dict for a (possibly BFCL-dialect) schema node."""
    if not isinstance(schema, dict):
        raise ToolSpecError(f"{where}: schema must be an object, got {type(schema).__name__}")
    out: dict = {}
    for key, value in schema.items():
        if key == "type":
            types = value if isinstance(value, list) else [value]
            mapped: list[str] = []
            for t in types:
                if not isinstance(t, str):
                    raise ToolSpecError(f"{where}.type: expected a string, got {t!r}")
                if t.lower() not in _TYPE_ALIASES:
                    raise ToolSpecError(
                        f"{where}.type: unknown type {t!r} (use string, integer, number, "
                        "boolean, array, object, null or any)"
                    )
                alias = _TYPE_ALIASES[t.lower()]
                if alias is None:
                    mapped = []
                    break  # "any" leaves the value unconstrained
                if alias not in mapped:
                    mapped.append(alias)
            if mapped:
                out["type"] = mapped[0] if len(mapped) == 1 else mapped
        elif key == "properties":
            if not isinstance(value, dict):
                raise ToolSpecError(f"{where}.properties: must be an object")
            out["properties"] = {
                str(k): normalize_schema(v, f"{where}.properties.{k}") for k, v in value.items()
            }
        elif key == "items":
            if isinstance(value, dict):
                out["items"] = normalize_schema(value, f"{where}.items")
            elif isinstance(value, list):  # tuple-style items
                out["prefixItems"] = [
                    normalize_schema(v, f"{where}.items[{i}]") for i, v in enumerate(value)
                ]
            else:
                raise ToolSpecError(f"{where}.items: must be an object or a list")
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = normalize_schema(value, f"{where}.additionalProperties")
        elif key == "required":
            if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
                raise ToolSpecError(f"{where}.required: must be a list of strings")
            out["required"] = list(dict.fromkeys(value))
        elif key == "optional":
            continue  # a BFCL-era flag with no JSON-schema meaning; "required" carries it
        else:
            out[key] = value
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    return out


class ToolSpec(BaseModel):
    """A function the model may call, in canonical JSON-schema form."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_any(cls, raw: JSON, where: str = "tool") -> ToolSpec:
        """Accept the OpenAI form, the bare form or BFCL's dialect; raise ToolSpecError."""
        if not isinstance(raw, dict):
            raise ToolSpecError(f"{where}: expected an object, got {type(raw).__name__}")
        body = raw
        if raw.get("type") == "function" and isinstance(raw.get("function"), dict):
            body = raw["function"]
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ToolSpecError(f"{where}: missing function name")
        if not _NAME_RE.match(name):
            raise ToolSpecError(f"{where} {name!r}: invalid function name")
        desc = body.get("description") or ""
        if not isinstance(desc, str):
            raise ToolSpecError(f"{where} {name!r}: description must be a string")
        params = body.get("parameters", {"type": "object", "properties": {}})
        params = normalize_schema(params, f"{where} {name!r}.parameters")
        if params.get("type", "object") != "object":
            raise ToolSpecError(f"{where} {name!r}: parameters must be an object schema")
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        missing = [r for r in params.get("required", []) if r not in params["properties"]]
        if missing:
            raise ToolSpecError(f"{where} {name!r}: required params not in properties: {missing}")
        problem = _schema_problem(params)
        if problem is not None:
            raise ToolSpecError(f"{where} {name!r}: invalid JSON schema: {problem}")
        return cls(name=name, description=desc, parameters=params)

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @property
    def properties(self) -> dict:
        return self.parameters.get("properties", {})

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def to_openai(self) -> dict:
        return {"type": "function", "function": self.to_json()}


class ToolCall(BaseModel):
    """One function call: a name and a JSON object of arguments."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict = Field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "arguments": self.arguments}

    def to_openai(self) -> dict:
        return {"type": "function", "function": self.to_json()}


class Message(BaseModel):
    """A chat message. Assistant messages may carry tool calls; tool messages a result."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    name: str | None = None  # the tool's name on a tool-result message

    @model_validator(mode="after")
    def _calls_only_on_assistant(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"{self.role} message cannot carry tool_calls")
        return self

    def to_json(self) -> dict:
        out: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_json() for c in self.tool_calls]
        if self.name is not None:
            out["name"] = self.name
        return out

    def to_openai(self) -> dict:
        """OpenAI chat format (what chat templates and endpoints consume)."""
        out: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.name is not None:
            out["name"] = self.name
        return out


class Label(BaseModel):
    """The reference assistant step: a list of calls, or a no-call text answer.

    A no-call label carries its ``kind``: ``clarify`` (the step asks the user for missing
    information) or ``irrelevant`` (it declines). Whoever writes the label sets it from
    what the step is (the seed act, the import plan, a relabel's prediction); a no-call
    label written without one gets :func:`looptool.core.reply.reply_kind` of its text
    (so labels stored before they carried a kind still load). Call labels have none.
    """

    model_config = ConfigDict(frozen=True)

    calls: list[ToolCall] = Field(default_factory=list)
    text: str | None = None
    kind: Literal["clarify", "irrelevant"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("calls") and data.get("kind") is None:
            return {**data, "kind": reply_kind(data.get("text"))}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Label:
        if self.calls and self.text is not None:
            raise ValueError("a label is either calls or a no-call text, not both")
        if self.calls and self.kind is not None:
            raise ValueError(f"a call label has no no-call kind (got kind {self.kind!r})")
        return self

    @property
    def is_no_call(self) -> bool:
        return not self.calls

    def to_json(self) -> dict:
        if self.calls:
            return {"calls": [c.to_json() for c in self.calls]}
        return {"calls": [], "text": self.text or "", "kind": self.kind}

    @property
    def hash(self) -> str:
        return content_hash(self.to_json())


class Sample(BaseModel):
    """One training item: tools T, context c_t (messages before the step), label a_t*."""

    tools: list[ToolSpec]
    context: list[Message]
    label: Label

    @field_validator("context")
    @classmethod
    def _non_empty(cls, v: list[Message]) -> list[Message]:
        if not v:
            raise ValueError("context must hold at least one message")
        return v

    def tools_json(self) -> list[dict]:
        return [t.to_json() for t in self.tools]

    def context_json(self) -> list[dict]:
        return [m.to_json() for m in self.context]

    @property
    def sample_id(self) -> str:
        """Stable id over (tools, context); survives relabeling."""
        return content_hash({"tools": self.tools_json(), "context": self.context_json()})

    @property
    def label_hash(self) -> str:
        return self.label.hash

    def tool_by_name(self) -> dict[str, ToolSpec]:
        return {t.name: t for t in self.tools}
