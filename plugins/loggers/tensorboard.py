"""``--log tensorboard``: every result record as TensorBoard scalars and text.

One TensorBoard run per record, named by ``harness.loggers.run_name``, under
``$HARNESS_TENSORBOARD_DIR`` or else ``<--output>/tensorboard`` (``tensorboard --logdir`` there
shows every run of that output folder): the metrics as ``metrics/<name>``, the chance levels as
``chance/<name>``, the stage timings as ``seconds/<stage>``, and the protocol, weights and data
as text. Needs ``pip install 'vl-harness[tensorboard]'``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from harness import hookimpl
from harness.loggers import numbers, run_name

DIR_VARIABLE = "HARNESS_TENSORBOARD_DIR"


def log_dir(record: dict[str, Any]) -> Path:
    """Where the record's TensorBoard run is written."""
    base = os.environ.get(DIR_VARIABLE) or Path((record.get("run_config") or {}).get("output") or "results/runs") / "tensorboard"
    return Path(base) / run_name(record)


@hookimpl
def harness_run_finished(record: dict[str, Any]) -> None:
    writer = SummaryWriter(log_dir=str(log_dir(record)))
    try:
        for group, values in (("metrics", record["metrics"]), ("chance", record.get("reference_levels") or {})):
            for name, value in numbers(values).items():
                writer.add_scalar(f"{group}/{name}", value, global_step=0)
        stages = (record.get("timings") or {}).get("stages") or {}
        for stage, timing in stages.items():
            writer.add_scalar(f"seconds/{stage}", float(timing["seconds"]), global_step=0)
        about = {key: record.get(key) for key in ("task", "split", "model", "weights", "protocol", "data", "samples", "device", "precision", "seed")}
        writer.add_text("record", "```\n" + json.dumps(about, indent=1, default=str) + "\n```", global_step=0)
    finally:
        writer.close()
