"""Test data and helpers shared by the served-engine and real-vLLM test modules."""

from __future__ import annotations

import socket
from pathlib import Path

# One tool, in the OpenAI form, for chat requests that carry tools.
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hf_reference(model_dir: Path):
    """The hf engine in float32 on CPU: the reference the vLLM engines are compared with."""
    from looptool.engines.backends.hf import HFEngine
    from looptool.params.engines import EngineSpec

    spec = EngineSpec(
        backend="hf", model=str(model_dir), dtype="float32", device="cpu", batch_size=8
    )
    return HFEngine(model_dir, spec, progress=False)


def weather_messages(i: int) -> list[dict]:
    """The i-th of a set of user turns of three different lengths."""
    return [{"role": "user", "content": f"what is the weather in city {i}? " * (1 + i % 3)}]
