"""params.yaml, validated: one pydantic model per top-level section, one file each."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, model_validator

from looptool.params.engines import EnginesParams
from looptool.params.evaluation import EvalParams, IterationItem
from looptool.params.loop import LoopParams
from looptool.params.project import ProjectParams
from looptool.params.seed import SeedParams
from looptool.params.train import TrainParams, WarmstartParams


class ParamsError(ValueError):
    """params.yaml is missing or invalid; the message names the file and the key."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: ProjectParams = ProjectParams()
    engines: EnginesParams
    seed: SeedParams = SeedParams()
    warmstart: WarmstartParams = WarmstartParams()
    train: TrainParams = TrainParams()
    loop: LoopParams = LoopParams()
    eval: EvalParams = EvalParams()
    # keyed by the iteration number as a string, so DVC names stages probe@1, probe@2, ...
    iterations: dict[str, IterationItem]
    _source: str = PrivateAttr("params")  # the file these params came from, for messages

    @model_validator(mode="after")
    def _noop_needs_oracle(self) -> Params:
        if self.train.algorithm == "noop" and self.engines.policy.backend != "oracle":
            raise ValueError(
                "train.algorithm noop writes a placeholder checkpoint no model loads: it "
                "needs engines.policy.backend oracle (the dry run, params.paper-scale.yaml)"
            )
        return self

    def iteration(self, j: int) -> IterationItem:
        item = self.iterations.get(str(j))
        if item is not None:
            return item
        raise ParamsError(f"{self._source}: no iteration j={j} in `iterations`")

    def for_iteration(self, j: int) -> Params:
        """These params with iteration ``j``'s ``overrides`` applied (validated again)."""
        overrides = self.iteration(j).overrides
        if not overrides:
            return self
        where = f"{self._source}: iterations[j={j}].overrides"
        raw = self.model_dump()
        for dotted, value in overrides.items():
            node = raw
            *parents, leaf = dotted.split(".")
            for key in parents:
                if not isinstance(node, dict) or key not in node:
                    raise ParamsError(f"{where}: unknown key {dotted!r}")
                node = node[key]
            if not isinstance(node, dict) or leaf not in node:
                raise ParamsError(f"{where}: unknown key {dotted!r}")
            node[leaf] = value
        try:
            out = Params.model_validate(raw)
        except ValidationError as exc:
            raise ParamsError(f"{where}: {_format(exc)}") from None
        if problem := _loose_scalar(raw, out):
            raise ParamsError(f"{where}: {problem}")
        out._source = self._source
        return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the
    last; DVC refuses the file later). Keys merged in with ``<<`` may be overridden."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    continue  # unhashable: PyYAML reports it itself
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats, as DVC (ruamel.yaml) reads them: `5e-06` and `1e5` are numbers there,
# strings for PyYAML's YAML 1.1 rules (which need a dot), and DVC writes them that way
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: str | Path, what: str = "file") -> object:
    """A YAML file's value; ParamsError (one line: file, line, problem) when it cannot be
    read: missing, a folder or device, not UTF-8, invalid YAML or a key given twice."""
    p = Path(path)
    if not p.exists():
        raise ParamsError(f"{p}: {what} not found")
    if not p.is_file():
        raise ParamsError(f"{p}: not a file (a folder or device); give the {what}")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ParamsError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise ParamsError(
            f"{p}: line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
            "save it as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        why = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise ParamsError(f"{p}: {where}invalid YAML: {why}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{p}: invalid YAML: {' '.join(str(exc).split())}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate params.yaml; errors name the file and the offending key."""
    p = Path(path)
    raw = read_yaml(p, "params file")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{p}: expected a mapping of sections (project:, engines:, ...) at the top, "
            f"got a {type(raw).__name__}"
        )
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{p}: {_format(exc)}") from None
    if problem := _loose_scalar(raw, params):
        raise ParamsError(f"{p}: {problem}")
    params._source = str(p)
    for key, item in params.iterations.items():
        if key != str(item.j):
            raise ParamsError(f"{p}: iterations[{key!r}] has j={item.j}; the key must equal j")
    js = sorted(item.j for item in params.iterations.values())
    if js != list(range(1, len(js) + 1)):
        raise ParamsError(f"{p}: iterations must be j = 1..J without gaps, got {js}")
    return params


def _format(exc: ValidationError) -> str:
    """The first problem as ``key: message`` (one line), with the other keys named."""

    def msg(e: dict) -> str:  # pydantic's "Extra inputs are not permitted" is a typo'd key
        return "unknown key (a typo?)" if e["type"] == "extra_forbidden" else e["msg"]

    def key(e: dict) -> str:
        return ".".join(str(x) for x in e["loc"]) or "(top)"

    errors = exc.errors()
    more = [key(e) for e in errors[1:]]
    tail = f" (also: {', '.join(more[:5])}{', ...' if len(more) > 5 else ''})" if more else ""
    return f"{key(errors[0])}: {msg(errors[0])}{tail}"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    return "an integer" if isinstance(value, int) else "a number"


def _loose_scalar(raw: object, value: object, key: str = "") -> str | None:
    """The first place where pydantic's lax mode converted a scalar of another kind: a
    YAML switch (true/false), a quoted string or 3.0 where a number or switch is meant,
    or a number where a switch is meant. Ints filling float fields are fine."""
    if isinstance(value, BaseModel) and isinstance(raw, dict):
        fields = type(value).model_fields
        pairs = [(k, v, getattr(value, k)) for k, v in raw.items() if k in fields]
    elif isinstance(value, dict) and isinstance(raw, dict):
        pairs = [(k, v, value.get(k, value.get(str(k)))) for k, v in raw.items()]
    elif isinstance(value, list | tuple) and isinstance(raw, list | tuple):
        pairs = [(f"[{i}]", v, w) for i, (v, w) in enumerate(zip(raw, value, strict=False))]
    else:
        if isinstance(value, bool) or isinstance(value, int | float):
            if type(raw) is type(value) or (isinstance(value, float) and type(raw) is int):
                return None
            shown = yaml.safe_dump(raw, default_flow_style=True).strip().removesuffix("...")
            return f"{key}: expected {_kind(value)}, got {shown.strip()}"
        return None
    for k, v, w in pairs:
        sub = f"{key}{k}" if str(k).startswith("[") else f"{key}.{k}" if key else str(k)
        if problem := _loose_scalar(v, w, sub):
            return problem
    return None
