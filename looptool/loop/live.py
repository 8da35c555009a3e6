"""The DVCLive folder of a run (``dvclive.Live`` without network, dvc.yaml or experiment
of its own), and the files a run with no training step leaves. Kept apart from
:mod:`looptool.loop.train_logging` so a stage that trains nothing (the warm start
disabled, ``train.algorithm: noop``) never imports transformers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _studio_offline() -> Iterator[None]:
    # dvclive decides once, at construction, whether to post to DVC Studio (it would with
    # a Studio token in the environment or DVC config); offline mode turns that off.
    before = os.environ.get("DVC_STUDIO_OFFLINE")
    os.environ["DVC_STUDIO_OFFLINE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DVC_STUDIO_OFFLINE", None)
        else:
            os.environ["DVC_STUDIO_OFFLINE"] = before


def _live_class():
    from dvclive import Live

    class PipelineLive(Live):
        """``Live`` without its repository hooks (dvclive 3.49 ``_init_dvc``): they open the
        DVC repo at the working directory to name and save an experiment of its own, which
        a pipeline stage never does (``save_dvc_exp=False``, dvc.yaml declares every file);
        they also crash in a git repo without commits and ``dvc init`` a plain git repo."""

        def _init_dvc(self):
            self._dvc_file = "dvc.yaml"  # unused with dvcyaml=None

    return PipelineLive


def open_live(directory: str | os.PathLike):
    """A ``dvclive.Live`` writing into ``directory`` (emptied first): no network, no
    dvc.yaml, no report, no experiment of its own."""
    with _studio_offline():
        return _live_class()(
            dir=str(directory),
            resume=False,
            report=None,
            save_dvc_exp=False,
            dvcyaml=None,
            monitor_system=False,
        )


def write_empty_live(directory: str | os.PathLike) -> None:
    """The files a run with no training step leaves (the warm start disabled): metrics.json
    with ``step`` 0, an empty plots/metrics folder and no params, so dvc.yaml's declared
    outputs exist."""
    live = open_live(directory)
    live.step = 0
    live.end()
    (Path(directory) / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
    params = Path(live.params_file)
    if not params.exists():
        params.write_text("{}\n", encoding="utf-8")
