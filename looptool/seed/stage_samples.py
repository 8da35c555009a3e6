"""The seed_samples stage, library side: verified dialogues -> D_seed samples.

Writes samples.parquet (D_seed train), heldout.parquet, label_noise.parquet,
sample_rejects.parquet and metrics.json. The other seed stages, and the CLI entry all
of them share (:func:`looptool.seed.pipeline.stage_main`), are in
:mod:`looptool.seed.pipeline`; this one runs no engine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from looptool.core.tables import LABEL_NOISE, REJECTS, SAMPLES, rows_to_table
from looptool.params import Params
from looptool.seed.diversity import seed_diversity
from looptool.seed.imports import mark_imported
from looptool.seed.noise import inject_noise
from looptool.seed.samples import build_samples
from looptool.seed.stage_data import kind_counts, read_rows, reject_counts
from looptool.store.io import write_json_atomic, write_parquet_atomic


def run_samples(params: Params, out_dir: Path) -> dict:
    """Verified dialogues -> D_seed train / held-out samples (+ optional label noise)."""
    sp = params.seed
    dialogues = read_rows(out_dir / "dialogues.parquet")
    train, heldout, rejects, acts = build_samples(
        dialogues, sp.heldout_fraction, params.project.seed, set(sp.no_call_acts), sp.heldout_by
    )
    imports = mark_imported(dialogues, train, heldout)  # origin "import" + counts per file
    clean_kinds = kind_counts(train)
    clean_train = train
    train, noise = inject_noise(train, sp.label_noise, dict(sp.noise.kinds), params.project.seed)
    write_parquet_atomic(out_dir / "samples.parquet", rows_to_table(train, SAMPLES))
    write_parquet_atomic(out_dir / "heldout.parquet", rows_to_table(heldout, SAMPLES))
    write_parquet_atomic(out_dir / "label_noise.parquet", rows_to_table(noise, LABEL_NOISE))
    write_parquet_atomic(out_dir / "sample_rejects.parquet", rows_to_table(rejects, REJECTS))
    both = train + heldout
    after_error = sum(
        any(m["role"] == "tool" and '"error"' in m["content"] for m in json.loads(r["context"]))
        for r in both
    )
    metrics = {
        "dialogues": len(dialogues),
        "train_dialogues": len({r["dialogue_id"] for r in train}),
        "heldout_dialogues": len({r["dialogue_id"] for r in heldout}),
        "samples": len(both),
        "train_samples": len(train),
        "heldout_samples": len(heldout),
        "kinds": kind_counts(both),
        "train_kinds_clean": clean_kinds,
        "heldout_kinds": kind_counts(heldout),
        "samples_by_act": acts,
        "samples_after_error_result": after_error,
        "rejected": len(rejects),
        "rejected_by_tier": reject_counts(rejects),
        "imports": imports,
        "heldout_by": sp.heldout_by,
        # measured on the clean labels: injected noise is not the generator's diversity
        "diversity": seed_diversity(clean_train, heldout, params.loop.expand.near_dup_threshold),
        "label_noise": {
            "requested_fraction": sp.label_noise,
            "noisy": len(noise),
            "fraction": round(len(noise) / len(train), 6) if train else 0.0,
            "by_kind": dict(sorted(Counter(r["noise_kind"] for r in noise).items())),
            "schema_valid": sum(r["schema_valid"] for r in noise),
            "schema_invalid": sum(not r["schema_valid"] for r in noise),
        },
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics
