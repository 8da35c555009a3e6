"""What a training run reports while it runs: per-step metrics through DVCLive and a
progress display for the terminal or the build log.

DVCLive (transformers' ``DVCLiveCallback``) writes ``<dir>/metrics.json`` (the last value
of each metric and ``step``), ``<dir>/plots/metrics/<name>.tsv`` (one row per optimizer
step) and ``<dir>/params.yaml`` (the trainer's arguments). dvc.yaml declares them, so
``dvc exp show``, ``dvc exp diff``, ``dvc plots show/diff`` and the VS Code DVC extension
read them directly. The stock callback is adapted in three ways:

- a row's step is the trainer's ``global_step`` (the stock one counts log calls, so the
  end-of-training summary became one more step), and a resumed run replays the log
  history of its checkpoint first, so a killed-and-resumed run writes the same files;
- the end-of-training summary (``train_runtime``, samples per second ...) and per-step
  wall time (``step_time``) are left out: DVC compares these files, and timings would
  differ on every run (``train_metrics.json`` holds the run's speed);
- params leave out paths (the scratch ``output_dir`` differs per checkout).

The logger never touches the network (DVC Studio reporting is forced off), writes no
dvc.yaml of its own, makes no report and saves no experiment: the pipeline's dvc.yaml
declares its files and ``dvc exp run`` records them.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from transformers import TrainerCallback
from transformers.integrations import DVCLiveCallback

from looptool.loop.live import open_live

# Per-step log keys whose values are wall-clock measurements (differ on every run).
VOLATILE_KEYS = frozenset({"step_time", "total_flos"})
# Keys of the trainer's end-of-training summary record (not a step).
SUMMARY_KEYS = frozenset({"train_runtime", "train_samples_per_second", "train_steps_per_second"})
# TrainingArguments that are paths of this machine / checkout (not logged as params).
PATH_ARGS = frozenset({"output_dir", "logging_dir", "run_name"})
# What the progress line shows, in order: (log key, label).
PROGRESS_KEYS = (
    ("reward", "reward"),
    ("toolmatch/tool_call_rate", "calls"),
    ("loss", "loss"),
    ("mean_token_accuracy", "token_acc"),
)
PROGRESS_EVERY_ENV = "LOOPTOOL_PROGRESS_EVERY"


def is_step_log(logs: Mapping[str, Any]) -> bool:
    """True for a per-optimizer-step log record (not the end-of-training summary)."""
    return not (SUMMARY_KEYS & logs.keys()) and not any(k.startswith("eval_") for k in logs)


def step_metrics(logs: Mapping[str, Any]) -> dict[str, float | int]:
    """The loggable, non-volatile scalars of a step record, under DVCLive's names."""
    from dvclive.plots import Metric
    from dvclive.utils import standardize_metric_name

    out: dict[str, float | int] = {}
    for key, value in logs.items():
        if key in VOLATILE_KEYS or key == "step" or not Metric.could_log(value):
            continue
        if isinstance(value, str):
            continue
        out[standardize_metric_name(key, "dvclive.huggingface")] = value
    return out


class LiveSteps(DVCLiveCallback):
    """transformers' DVCLive callback, one row per optimizer step at ``global_step``;
    opens its ``Live`` on the main process when training begins (see the module doc)."""

    def __init__(self, directory: str | os.PathLike):
        super().__init__(live=None, log_model=False)
        self.directory = Path(directory)

    def setup(self, args, state, model):
        self._initialized = True
        if not state.is_world_process_zero:
            return
        self.live = open_live(self.directory)
        params = {k: v for k, v in args.to_dict().items() if k not in PATH_ARGS}
        self.live.log_params(params)
        for entry in state.log_history:  # a resumed run: the steps before its checkpoint
            if "step" in entry and is_step_log(entry):
                self._log_step(int(entry["step"]), entry)

    def _log_step(self, step: int, logs: Mapping[str, Any]) -> None:
        metrics = step_metrics(logs)
        if not metrics:
            return
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.next_step()

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model)
        if state.is_world_process_zero and logs and is_step_log(logs):
            self._log_step(state.global_step, logs)

    def on_train_end(self, args, state, control, **kwargs):
        if self._initialized and state.is_world_process_zero:
            self.live.end()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress_every(total: int) -> int:
    """Steps between two progress lines in a log: ``$LOOPTOOL_PROGRESS_EVERY`` or about
    20 lines per run."""
    raw = os.environ.get(PROGRESS_EVERY_ENV, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return max(1, math.ceil(total / 20))


class TrainProgress(TrainerCallback):
    """Progress of one training run on the main process: a tqdm bar (steps, rate, ETA,
    latest reward / loss) when ``stream`` is a terminal, else one line every ``every``
    optimizer steps (and the first and last) with steps, elapsed time, ETA and the same
    values. Replaces the trainer's own printer, which dumps each log dict."""

    def __init__(self, name: str, stream: TextIO | None = None, every: int | None = None):
        self.name = name
        self.stream = stream
        self.every = every
        self.bar = None
        self.start_step = 0
        self.total = 0
        self.t0 = 0.0
        self.latest: dict[str, Any] = {}

    @property
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _tty(self) -> bool:
        try:
            return self._out.isatty()
        except (AttributeError, ValueError):
            return False

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.total = int(state.max_steps or 0)
        self.start_step = int(state.global_step or 0)
        self.t0 = time.monotonic()
        every = self.every or progress_every(self.total)
        self.every = every
        resumed = f", resumed at step {self.start_step}" if self.start_step else ""
        if self._tty():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.start_step,
                desc=self.name,
                unit="step",
                file=self._out,
                dynamic_ncols=True,
            )
        else:
            self._line(f"{self.total} steps{resumed}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def _summary(self) -> str:
        parts = [
            f"{label} {_fmt(self.latest[k])}" for k, label in PROGRESS_KEYS if k in self.latest
        ]
        return " ".join(parts)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or not is_step_log(logs):
            return
        self.latest = dict(logs)
        step = state.global_step
        if self.bar is not None:
            summary = {label: _fmt(logs[k]) for k, label in PROGRESS_KEYS if k in logs}
            self.bar.set_postfix(summary, refresh=False)
            return
        done = step - self.start_step
        if done == 1 or step % self.every == 0 or step >= self.total:
            elapsed = time.monotonic() - self.t0
            eta = elapsed / done * (self.total - step) if done > 0 else 0.0
            pct = 100 * step / self.total if self.total else 100.0
            self._line(
                f"step {step}/{self.total} ({pct:.0f}%), {_duration(elapsed)} elapsed, "
                f"ETA {_duration(eta)} | {self._summary()}".rstrip(" |")
            )

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        done = state.global_step - self.start_step
        self._line(
            f"done: {done} step{'' if done == 1 else 's'} in "
            f"{_duration(time.monotonic() - self.t0)}"
            + (f" | {self._summary()}" if self.latest else "")
        )

    def _line(self, text: str) -> None:
        print(f"{self.name}: {text}", file=self._out, flush=True)


def attach(trainer, name: str, live_dir: str | os.PathLike | None) -> None:
    """Progress (instead of the trainer's dict printer) and, with ``live_dir``, DVCLive."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainProgress(name))
    if live_dir is not None:
        trainer.add_callback(LiveSteps(live_dir))


@contextmanager
def quiet_hf_bars() -> Iterator[None]:
    """transformers' own bars (checkpoint shards written / loaded) off while training, so
    the run's one bar or its log lines are all it prints."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
