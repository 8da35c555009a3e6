"""Checkpoints are saved in the training dtype: bf16 training (fp32 master weights under
autocast) gives a bf16 checkpoint, fp32 training an fp32 one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from looptool.loop.train_setup import save_checkpoint_atomic, training_dtype


def _trainer(tiny_model_dir, tmp_path, bf16: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), use_cpu=True, bf16=bf16, report_to="none"
    )
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return Trainer(model=model, args=args, processing_class=tok), model


def _dtypes(model_dir) -> set[str]:
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}


@pytest.mark.parametrize("bf16", [True, False])
def test_checkpoint_is_saved_in_the_training_dtype(tiny_model_dir, tmp_path, bf16):
    trainer, model = _trainer(tiny_model_dir, tmp_path, bf16)
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert training_dtype(trainer.args) == ("bfloat16" if bf16 else None)
    out = tmp_path / "model"
    save_checkpoint_atomic(trainer, out)
    assert _dtypes(out) == ({"BF16"} if bf16 else {"F32"})
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == ("bfloat16" if bf16 else "float32")
    assert (out / "tokenizer_config.json").exists()
    assert not (out / "training_args.bin").exists()
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    want = torch.bfloat16 if bf16 else torch.float32
    assert loaded.dtype == want
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, expected[k].to(want)), k
