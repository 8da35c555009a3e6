"""vLLM API drift, without CUDA: the arguments VLLMEngine builds are checked against the
source of the real vllm 0.31.0 wheel. `make test` installs the wheel with --no-deps into
``.venv/vllm-wheel`` (a directory NOT on sys.path: a half-installed ``vllm`` would make
TRL import it and fail), and this test reads its classes' fields and signatures with
``ast`` (``import vllm`` needs CUDA-only packages). Skips cleanly without the wheel."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest

from looptool.engines.backends.vllm import (
    SCORE_KWARGS,
    VLLMEngine,
    choice_kwargs,
    sampling_kwargs,
)
from looptool.engines.base import SamplingParams
from looptool.params.engines import EngineSpec

REPO = Path(__file__).resolve().parents[1]
WHEEL_DIR = Path(os.environ.get("LOOPTOOL_VLLM_WHEEL_DIR", REPO / ".venv" / "vllm-wheel"))


def _root() -> Path | None:
    if (WHEEL_DIR / "vllm" / "__init__.py").exists():
        return WHEEL_DIR / "vllm"
    spec = importlib.util.find_spec("vllm")  # a full install (GPU machine)
    return Path(spec.origin).parent if spec and spec.origin else None


_found = _root()
if _found is None:
    pytest.skip("vllm wheel not installed (make test installs it)", allow_module_level=True)
ROOT: Path = _found


def _class(path: str, name: str) -> ast.ClassDef:
    tree = ast.parse((ROOT / path).read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _params(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]


def _fields(cls: ast.ClassDef) -> set[str]:
    return {
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }


def test_installed_version_is_the_pinned_one():
    info = list(ROOT.parent.glob("vllm-*.dist-info"))
    if info:
        assert info[0].name == "vllm-0.31.0.dist-info"
    else:
        from importlib.metadata import version

        assert version("vllm") == "0.31.0"


def test_sampling_arguments_are_fields_of_the_real_classes():
    fields = _fields(_class("sampling_params.py", "SamplingParams"))
    structured = _fields(_class("sampling_params.py", "StructuredOutputsParams"))
    assert "choice" in structured
    made = []

    def fake_structured(**kw):
        assert set(kw) <= structured
        made.append(kw)
        return kw

    for p in (
        SamplingParams(max_tokens=7),
        SamplingParams(max_tokens=5, temperature=0.7, n=3, stop=("</x>",), logprobs=True),
    ):
        assert set(sampling_kwargs(p)) <= fields, set(sampling_kwargs(p)) - fields
    assert set(SCORE_KWARGS) <= fields
    assert set(choice_kwargs(["A", "B"], 2, fake_structured)) <= fields
    assert made == [{"choice": ["A", "B"]}]
    # the fields we read back from outputs
    completion = _fields(_class("outputs.py", "CompletionOutput"))
    assert {"index", "text", "token_ids", "logprobs", "finish_reason"} <= completion
    request = ast.unparse(_method(_class("outputs.py", "RequestOutput"), "__init__"))
    for name in ("request_id", "outputs", "finished", "prompt_logprobs"):
        assert f"self.{name} = " in request, name


def test_llm_constructor_takes_every_argument_we_pass():
    init = _params(_method(_class("entrypoints/llm.py", "LLM"), "__init__"))
    spec = EngineSpec(backend="vllm", model="m", max_model_len=4096)
    kwargs = VLLMEngine.llm_kwargs("m", "m", spec)
    # LLM passes unknown keywords on to EngineArgs: each key is a parameter of one of them
    engine_args = {
        n.target.id
        for n in _class("engine/arg_utils.py", "EngineArgs").body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    assert set(kwargs) <= set(init) | engine_args, set(kwargs) - set(init) - engine_args


def test_streaming_calls_exist_with_our_signatures():
    llm = _class("entrypoints/llm.py", "LLM")
    assert _params(_method(llm, "enqueue"))[:3] == ["self", "prompts", "sampling_params"]
    assert "use_tqdm" in _params(_method(llm, "enqueue"))
    src = (ROOT / "entrypoints/llm.py").read_text()
    assert "self.llm_engine = " in src and "self.model_config = self.llm_engine" in src
    engine = _class("v1/engine/llm_engine.py", "LLMEngine")
    assert _params(_method(engine, "step")) == ["self"]
    assert _params(_method(engine, "abort_request"))[:3] == ["self", "request_ids", "internal"]
    # the id enqueue returns is the external id plus "-<random>"; outputs carry the external
    proc = (ROOT / "v1/engine/input_processor.py").read_text()
    assert 'request.request_id = f"{request.external_req_id}-{random_uuid():.8}"' in proc
    ps = (ROOT / "distributed/parallel_state.py").read_text()
    assert "def cleanup_dist_env_and_memory(" in ps
    assert "def shutdown(" in (ROOT / "v1/engine/core_client.py").read_text()
