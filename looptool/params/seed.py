"""`seed` section: trees -> APIs -> dialogues -> verification -> samples (D_seed)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Mirrors looptool.seed.plan.TURN_KINDS / looptool.seed.noise.NOISE_KINDS (a test keeps
# them equal); params stay importable without the seed package.
TURN_KINDS = ("single", "parallel", "multi_step", "clarify", "irrelevant")
NOISE_KINDS = ("wrong_value", "swapped_params", "wrong_function", "dropped_call", "type_error")

# An agent / tier is served by an engine role of `engines:` or by the template backend.
EngineRef = Literal["generator", "judge", "policy", "template"]


def _range(v: tuple[int, int]) -> tuple[int, int]:
    if not 1 <= v[0] <= v[1]:
        raise ValueError(f"range must satisfy 1 <= min <= max, got {list(v)}")
    return v


class TreeFiles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context: str = "data/trees/context_tree.yaml"
    constraint: str = "data/trees/constraint_tree.yaml"


class ToolImport(BaseModel):
    """A file of tools and/or dialogues imported into the seed data (looptool.seed.importers)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    # auto: from the first record; one of looptool.seed.importers.FORMATS otherwise
    format: Literal["auto", "openai", "hermes", "xlam", "toolace", "bfcl", "toolbench", "mcp"] = (
        "auto"
    )
    domain: str | None = None  # default: import:<file stem>
    limit: int | None = Field(None, ge=1)  # read at most this many records
    samples: bool = True  # false: tools only, the file's dialogues are not imported
    # bfcl: the possible-answer file (default: possible_answer/<file name> next to path)
    answers: str | None = None


class ApiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_draws: int = Field(520, ge=0)  # tree draws sent to the generator
    # Which engine synthesizes the APIs (as for the dialogue agents): a role or "template".
    engine: EngineRef = "generator"
    imports: list[ToolImport] = Field(default_factory=list)
    max_tokens: int = Field(768, ge=16)
    temperature: float = Field(0.7, ge=0.0)
    # chat-template enable_thinking: off, so a reasoning model spends max_tokens on the spec
    enable_thinking: bool = False


class AgentEngines(BaseModel):
    model_config = ConfigDict(extra="forbid")

    planner: EngineRef = "generator"
    user: EngineRef = "generator"
    assistant: EngineRef = "generator"
    tool: EngineRef = "generator"


class AgentTokens(BaseModel):
    model_config = ConfigDict(extra="forbid")

    planner: int = Field(1024, ge=8)
    user: int = Field(160, ge=8)
    assistant: int = Field(384, ge=8)
    tool: int = Field(256, ge=8)


class DialogueParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_dialogues: int = Field(500, ge=0)
    tools_per_dialogue: tuple[int, int] = (2, 4)
    turns: tuple[int, int] = (1, 3)  # user turns per dialogue
    # relative weights of the user-turn kinds (a call turn after an earlier call turn
    # yields multi_step samples, so parallel is weighted up to keep single-turn parallels)
    turn_mix: dict[Literal[TURN_KINDS], float] = Field(  # type: ignore[valid-type]
        default_factory=lambda: {
            "single": 0.25,
            "parallel": 0.3,
            "multi_step": 0.2,
            "clarify": 0.15,
            "irrelevant": 0.1,
        }
    )
    chain_rate: float = Field(0.6, ge=0.0, le=1.0)  # prefer tool sets with a dependency chain
    distractor_rate: float = Field(0.3, ge=0.0, le=1.0)  # add one tool of another domain
    tool_error_rate: float = Field(0.08, ge=0.0, le=1.0)  # planned calls whose result is an error
    # template assistant only: rate of deliberate mistakes for verification to catch
    template_slip_rate: float = Field(0.05, ge=0.0, le=1.0)
    max_messages: int = Field(40, ge=4)
    agents: AgentEngines = AgentEngines()
    max_tokens: AgentTokens = AgentTokens()
    temperature: float = Field(0.7, ge=0.0)
    enable_thinking: bool = False  # passed to chat templates that know it (Qwen3)

    _ranges = field_validator("tools_per_dialogue", "turns")(_range)

    @field_validator("turn_mix")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("turn_mix weights must be >= 0 with at least one > 0")
        return v


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Second tier: an engine role ("judge", ...) asks the model PASS/FAIL per step;
    # "template" runs the programmatic intent check; "off" skips the tier.
    llm_tier: Literal["generator", "judge", "policy", "template", "off"] = "template"
    reasons: bool = True  # ask an LLM judge for a one-sentence reason on FAIL
    max_tokens: int = Field(96, ge=8)


class NoiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: dict[Literal[NOISE_KINDS], float] = Field(  # type: ignore[valid-type]
        default_factory=lambda: dict.fromkeys(NOISE_KINDS, 1.0)
    )


class SeedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trees: TreeFiles = TreeFiles()
    apis: ApiParams = ApiParams()
    dialogues: DialogueParams = DialogueParams()
    verify: VerifyParams = VerifyParams()
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    # dialogue: a seeded share of the dialogues; tool: dialogues offering a seeded set of
    # functions, so held-out samples call functions training never sees
    heldout_by: Literal["dialogue", "tool"] = "dialogue"
    # assistant no-call acts that become no_call samples (besides every tool-call step)
    no_call_acts: list[Literal["clarify", "irrelevant", "answer"]] = Field(
        default_factory=lambda: ["clarify", "irrelevant"]
    )
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # fraction of train labels corrupted
    noise: NoiseParams = NoiseParams()
