"""The training run's progress display and DVCLive logger, without a trainer: fake trainer
states drive the callbacks (the real runs are in test_train.py / test_train_stages.py)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from looptool.loop.live import open_live
from looptool.loop.train_logging import LiveSteps, TrainProgress, progress_every


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _state(step: int, max_steps: int, history: list | None = None) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True,
                           log_history=history or [])  # fmt: skip


def _run(cb, max_steps: int, start: int = 0) -> None:
    state = _state(start, max_steps)
    cb.on_train_begin(None, state, None)
    for step in range(start + 1, max_steps + 1):
        state.global_step = step
        cb.on_step_end(None, state, None)
        cb.on_log(None, state, None, logs={"loss": 0.5 / step, "reward": step / max_steps,
                                           "epoch": step / max_steps})  # fmt: skip
    cb.on_log(None, state, None, logs={"train_runtime": 1.0, "train_loss": 0.1})
    cb.on_train_end(None, state, None)


def test_log_gets_one_line_every_n_steps():
    out = io.StringIO()
    _run(TrainProgress("train iter_3", stream=out, every=10), 40)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train iter_3: 40 steps"
    steps = [ln.split("step ")[1].split("/")[0] for ln in lines[1:-1]]
    assert steps == ["1", "10", "20", "30", "40"]  # the first, every 10th, the last
    assert all("ETA" in ln and "elapsed" in ln for ln in lines[1:-1])
    assert "reward 1 loss 0.0125" in lines[-2] and lines[-1].startswith("train iter_3: done")
    assert "{" not in out.getvalue()  # no dict dumps


def test_terminal_gets_one_bar():
    out = Terminal()
    _run(TrainProgress("warmstart iter_0", stream=out), 5)
    text = out.getvalue()
    assert "warmstart iter_0: 100%" in text and "5/5" in text and "step/s" in text
    assert "reward=" in text  # the bar's postfix carries the latest values
    assert "step 3/5" not in text  # no log lines on a terminal besides the final one
    assert text.rstrip().splitlines()[-1].startswith("warmstart iter_0: done: 5 steps")


def test_progress_every(monkeypatch):
    monkeypatch.delenv("LOOPTOOL_PROGRESS_EVERY", raising=False)
    assert (progress_every(2), progress_every(40), progress_every(1000)) == (1, 2, 50)
    monkeypatch.setenv("LOOPTOOL_PROGRESS_EVERY", "7")
    assert progress_every(1000) == 7


def test_live_never_posts_to_studio(tmp_path, monkeypatch):
    """Even with a Studio token configured, DVCLive stays offline (and opens no browser)."""
    import dvclive.studio
    import dvclive.utils

    def refuse(*args, **kwargs):
        raise AssertionError("DVCLive tried to reach DVC Studio / a browser")

    monkeypatch.setenv("DVC_STUDIO_TOKEN", "isat_fake")
    monkeypatch.setenv("DVC_STUDIO_REPO_URL", "https://example.invalid/repo.git")
    monkeypatch.setattr(dvclive.studio, "post_live_metrics", refuse)
    monkeypatch.setattr(dvclive.utils.webbrowser, "open", refuse)
    live = open_live(tmp_path / "dvclive")
    live.log_metric("reward", 0.5)
    live.next_step()
    live.end()
    assert json.loads((tmp_path / "dvclive" / "metrics.json").read_text())["reward"] == 0.5
    assert not (tmp_path / "dvclive" / "dvc.yaml").exists()


def test_live_steps_are_global_steps_and_resume_replays(tmp_path):
    history = [{"loss": 1.0, "step_time": 3.2, "step": 1}, {"loss": 0.8, "step": 2}]
    cb = LiveSteps(tmp_path / "dvclive")
    args = SimpleNamespace(to_dict=lambda: {"output_dir": "/abs/scratch/x", "max_steps": 4})
    state = _state(2, 4, history)  # resumed from checkpoint-2
    cb.on_train_begin(args, state, None)
    for step in (3, 4):
        state.global_step = step
        cb.on_log(args, state, None, logs={"loss": 1.0 / step, "step_time": 2.0, "epoch": 1.0})
    cb.on_log(args, state, None, logs={"train_runtime": 9.0, "train_loss": 0.7})
    cb.on_train_end(args, state, None)
    loss = (tmp_path / "dvclive" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert loss == ["step\tloss", "1\t1.0", "2\t0.8", "3\t0.3333333333333333", "4\t0.25"]
    names = {p.stem for p in (tmp_path / "dvclive" / "plots" / "metrics").rglob("*.tsv")}
    assert names == {"loss", "epoch"}  # no timings, no end-of-run summary
    summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    assert summary == {"loss": 0.25, "epoch": 1.0, "step": 4}
    assert "output_dir" not in (tmp_path / "dvclive" / "params.yaml").read_text()


def test_other_ranks_write_nothing(tmp_path):
    cb = LiveSteps(tmp_path / "dvclive")
    state = SimpleNamespace(global_step=1, max_steps=2, is_world_process_zero=False,
                            log_history=[])  # fmt: skip
    args = SimpleNamespace(to_dict=lambda: {})
    cb.on_train_begin(args, state, None)
    cb.on_log(args, state, None, logs={"loss": 1.0})
    cb.on_train_end(args, state, None)
    assert not (tmp_path / "dvclive").exists()
