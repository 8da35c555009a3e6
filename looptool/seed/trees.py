"""The two trees API synthesis draws from, loaded and validated with pydantic.

- Context tree (``context_tree.yaml``): domain -> category -> leaf; a leaf is a capability
  with the vocabulary a synthesizer needs (object, verbs, ask phrases, candidate
  parameters, result fields).
- Constraint tree (``constraint_tree.yaml``): nested nodes whose ``constraints`` along a
  root-to-leaf path fix one value for each dimension (naming, params, required, types,
  output).

Validation errors name the file and the node path (``travel/lodging/hotel_search``).
Sampling is a seeded uniform draw over leaf paths; the path string is the provenance.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FieldType = Literal[
    "string",
    "integer",
    "number",
    "boolean",
    "enum",
    "date",
    "datetime",
    "time",
    "id",
    "array",
    "object",
]
TYPE_FEATURES = (
    "enum",
    "array",
    "object",
    "date",
    "datetime",
    "time",
    "boolean",
    "integer",
    "number",
    "string",
)
DIMENSIONS = ("naming", "params", "required", "types", "output")
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class TreeError(ValueError):
    """A tree file that cannot be used; the message names the file and the node."""


class FieldDef(BaseModel):
    """A candidate parameter (or result field) and how to make and phrase its values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None  # None only for array items
    type: FieldType
    description: str = ""
    examples: list[str | int | float] = Field(default_factory=list)
    values: list[str] = Field(default_factory=list)  # enum members
    min: float | None = None
    max: float | None = None
    prefix: str | None = None  # id values look like PREFIX-1234
    items: FieldDef | None = None
    fields: list[FieldDef] = Field(default_factory=list)
    say: str | None = None  # how a user phrases the value ("{v}"); booleans: phrase for true
    key: bool = False  # an identifier the API always takes, as a required parameter

    @model_validator(mode="after")
    def _per_type(self) -> FieldDef:
        if self.name is not None and not _SNAKE.match(self.name):
            raise ValueError(f"field name {self.name!r} must be snake_case")
        if self.type == "string" and len(self.examples) < 2:
            raise ValueError(f"string field {self.name!r} needs at least 2 examples")
        if self.type == "enum" and len(set(self.values)) < 2:
            raise ValueError(f"enum field {self.name!r} needs at least 2 distinct values")
        if self.type == "id" and not self.prefix:
            raise ValueError(f"id field {self.name!r} needs a prefix")
        if self.type == "array" and self.items is None:
            raise ValueError(f"array field {self.name!r} needs items")
        if self.type == "object" and not self.fields:
            raise ValueError(f"object field {self.name!r} needs fields")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"field {self.name!r}: min {self.min} > max {self.max}")
        # A boolean's say is the phrase for `true`; every other type embeds the value.
        if self.say is not None and self.type != "boolean" and "{v}" not in self.say:
            raise ValueError(f"field {self.name!r}: say must contain '{{v}}'")
        if self.key and self.type not in ("id", "string"):
            raise ValueError(f"key field {self.name!r} must be of type id or string")
        if self.type == "object" and any(f.name is None for f in self.fields):
            raise ValueError(f"object field {self.name!r}: every sub-field needs a name")
        return self


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} name {n!r}")
        seen.add(n)


class Leaf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    object: str
    verbs: list[str] = Field(min_length=1)
    ask: list[str] = Field(min_length=1)
    fields: list[FieldDef] = Field(min_length=1)
    returns: list[FieldDef] = Field(min_length=1)
    errors: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> Leaf:
        if not _SNAKE.match(self.name):
            raise ValueError(f"leaf name {self.name!r} must be snake_case")
        for group, defs in (("field", self.fields), ("returns field", self.returns)):
            if any(f.name is None for f in defs):
                raise ValueError(f"every {group} needs a name")
            _unique([f.name for f in defs], group)  # type: ignore[misc]
        return self


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    leaves: list[Leaf] = Field(min_length=1)

    @field_validator("leaves")
    @classmethod
    def _unique_leaves(cls, v: list[Leaf]) -> list[Leaf]:
        _unique([leaf.name for leaf in v], "leaf")
        return v


class Domain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    categories: list[Category] = Field(min_length=1)

    @field_validator("categories")
    @classmethod
    def _unique_categories(cls, v: list[Category]) -> list[Category]:
        _unique([c.name for c in v], "category")
        return v


class ContextTree(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "context"
    description: str = ""
    domains: list[Domain] = Field(min_length=1)

    @field_validator("domains")
    @classmethod
    def _unique_domains(cls, v: list[Domain]) -> list[Domain]:
        _unique([d.name for d in v], "domain")
        return v

    def leaf_paths(self) -> list[tuple[str, Leaf]]:
        """Every (``domain/category/leaf``, leaf) in file order."""
        return [
            (f"{d.name}/{c.name}/{leaf.name}", leaf)
            for d in self.domains
            for c in d.categories
            for leaf in c.leaves
        ]


class Constraints(BaseModel):
    """Constraint values a node contributes; a full path sets every dimension once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    naming: Literal["snake_case", "camelCase", "dotted"] | None = None
    params: tuple[int, int] | None = None
    required: Literal["all", "most", "one"] | None = None
    types: list[Literal[TYPE_FEATURES]] | None = None  # type: ignore[valid-type]
    output: Literal["record", "list", "envelope"] | None = None

    @field_validator("params")
    @classmethod
    def _range(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 1 <= v[0] <= v[1] <= 12:
            raise ValueError(f"params range must satisfy 1 <= min <= max <= 12, got {list(v)}")
        return v

    def set_dimensions(self) -> list[str]:
        return [d for d in DIMENSIONS if getattr(self, d) is not None]


class ConstraintNode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    constraints: Constraints = Constraints()
    children: list[ConstraintNode] = Field(default_factory=list)

    @field_validator("children")
    @classmethod
    def _unique_children(cls, v: list[ConstraintNode]) -> list[ConstraintNode]:
        _unique([c.name for c in v], "child")
        return v


class ConstraintTree(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "constraints"
    description: str = ""
    fallback_fields: dict[Literal[TYPE_FEATURES], list[FieldDef]] = Field(default_factory=dict)  # type: ignore[valid-type]
    children: list[ConstraintNode] = Field(min_length=1)

    @field_validator("children")
    @classmethod
    def _unique_children(cls, v: list[ConstraintNode]) -> list[ConstraintNode]:
        _unique([c.name for c in v], "child")
        return v

    @model_validator(mode="after")
    def _named_fallbacks(self) -> ConstraintTree:
        for feature, defs in self.fallback_fields.items():
            for f in defs:
                if f.name is None:
                    raise ValueError(f"fallback_fields.{feature}: every field needs a name")
                if f.type != feature:
                    raise ValueError(
                        f"fallback_fields.{feature}: field {f.name!r} has type {f.type!r}"
                    )
        return self

    def leaf_paths(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (``a/b/c``, merged constraints) root-to-leaf path in file order."""
        out: list[tuple[str, dict[str, Any]]] = []

        def walk(node: ConstraintNode, prefix: list[str], merged: dict[str, Any]) -> None:
            path = [*prefix, node.name]
            merged = dict(merged)
            for dim in node.constraints.set_dimensions():
                if dim in merged:
                    raise TreeError(
                        f"node {'/'.join(path)}: dimension {dim!r} already set higher on the path"
                    )
                value = getattr(node.constraints, dim)
                merged[dim] = list(value) if isinstance(value, tuple | list) else value
            if node.children:
                for child in node.children:
                    walk(child, path, merged)
                return
            missing = [d for d in DIMENSIONS if d not in merged]
            if missing:
                raise TreeError(f"node {'/'.join(path)}: leaf path does not set {missing}")
            out.append(("/".join(path), merged))

        for child in self.children:
            walk(child, [], {})
        return out


@dataclass(frozen=True)
class Trees:
    """Both trees plus their enumerated leaf paths (the sampling frame)."""

    context: ContextTree
    constraint: ConstraintTree
    context_leaves: list[tuple[str, Leaf]]
    constraint_leaves: list[tuple[str, dict[str, Any]]]

    def draw(self, rng: random.Random) -> tuple[str, Leaf, str, dict[str, Any]]:
        """One seeded draw: (context path, leaf, constraint path, constraints)."""
        cpath, leaf = self.context_leaves[rng.randrange(len(self.context_leaves))]
        kpath, cons = self.constraint_leaves[rng.randrange(len(self.constraint_leaves))]
        return cpath, leaf, kpath, cons

    def leaf(self, path: str) -> Leaf:
        for p, leaf in self.context_leaves:
            if p == path:
                return leaf
        raise KeyError(path)


# Keys holding child nodes: their list elements are named tree nodes.
_NODE_KEYS = ("domains", "categories", "leaves", "children")


def _describe_loc(raw: Any, loc: tuple[Any, ...]) -> tuple[str, str]:
    """Split a pydantic error location into (node path by names, remaining field path)."""
    node: list[str] = []
    rest: list[str] = []
    cur = raw
    i = 0
    while i < len(loc):
        key = loc[i]
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if key in _NODE_KEYS and isinstance(nxt, int) and not rest:
            items = cur.get(key) if isinstance(cur, dict) else None
            elem = items[nxt] if isinstance(items, list) and nxt < len(items) else None
            name = elem.get("name") if isinstance(elem, dict) else None
            node.append(str(name) if name is not None else f"{key}[{nxt}]")
            cur = elem
            i += 2
            continue
        if isinstance(key, int):
            elem = cur[key] if isinstance(cur, list) and key < len(cur) else None
            name = elem.get("name") if isinstance(elem, dict) else None
            rest.append(f"[{key}]" + (f"({name})" if name is not None else ""))
            cur = elem
        else:
            rest.append(("." if rest else "") + str(key))
            cur = cur.get(key) if isinstance(cur, dict) else None
        i += 1
    return "/".join(node) or "<root>", "".join(rest)


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise TreeError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TreeError(f"{path}: invalid YAML: {exc}") from None


def _validate(model: type[BaseModel], raw: Any, path: Path) -> Any:
    if not isinstance(raw, dict):
        raise TreeError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:10]:
            node, rest = _describe_loc(raw, tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  node {node}" + (f": {rest}" if rest else "") + f": {msg}")
        more = len(exc.errors()) - 10
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise TreeError(f"{path}: invalid tree\n" + "\n".join(lines) + tail) from None


def load_context_tree(path: str | Path) -> ContextTree:
    p = Path(path)
    return _validate(ContextTree, _read_yaml(p), p)


def load_constraint_tree(path: str | Path) -> ConstraintTree:
    p = Path(path)
    return _validate(ConstraintTree, _read_yaml(p), p)


def load_trees(context_path: str | Path, constraint_path: str | Path) -> Trees:
    """Load and validate both trees; errors name the file and the node."""
    ctx = load_context_tree(context_path)
    cons = load_constraint_tree(constraint_path)
    try:
        cons_leaves = cons.leaf_paths()
    except TreeError as exc:
        raise TreeError(f"{constraint_path}: {exc}") from None
    return Trees(ctx, cons, ctx.leaf_paths(), cons_leaves)
