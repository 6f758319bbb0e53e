"""``--log wandb``: every result record as one Weights & Biases run.

The run is named by ``harness.loggers.run_name``, in the project ``$WANDB_PROJECT`` (default
``vl-harness``), grouped by task, with the model, weights, protocol, data and seed as its config
and the metrics (and chance levels as ``chance/<name>``) in its summary and history. wandb's own
settings apply: ``WANDB_MODE=offline`` writes the run under ``$WANDB_DIR`` for a later
``wandb sync``; online it needs ``wandb login`` once. Needs ``pip install 'vl-harness[wandb]'``.
"""

from __future__ import annotations

import os
from typing import Any

import wandb

from harness import hookimpl
from harness.loggers import numbers, run_name

DEFAULT_PROJECT = "vl-harness"


def config_of(record: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes the run, as W&B config (filterable in its tables)."""
    weights = record.get("weights") or {}
    return {
        "task": record["task"], "split": record["split"], "model": record["model"],
        "weights": weights.get("name"),
        "weights_sha256": [f.get("sha256") for f in weights.get("files") or []],
        "protocol": record.get("protocol"), "data": record.get("data"), "seed": record.get("seed"),
        "precision": record.get("precision"), "device": record.get("device"),
        "samples": (record.get("samples") or {}).get("evaluated"), "versions": record.get("versions"),
    }


@hookimpl
def harness_run_finished(record: dict[str, Any]) -> None:
    values = numbers(record["metrics"])
    values |= {f"chance/{name}": value for name, value in numbers(record.get("reference_levels") or {}).items()}
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), name=run_name(record),
        group=record["task"], job_type="eval", config=config_of(record), reinit="create_new",
    )
    try:
        run.log(values)
        run.summary.update(values)
    finally:
        run.finish()
