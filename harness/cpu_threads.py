"""How many CPU threads torch uses for a run on the CPU.

A small model's matrices are too small for torch's intra-op threads to pay: on the 2-core machine
of docs/reliability.md, the tiny BLIP's VisDial run with torch's default (one thread per core)
took about 2.5x the CPU time and more wall time than with one thread, the extra being threads
spinning while they wait for each other. So a model below ``SMALL_MODEL_PARAMETERS`` runs on one
thread, unless the user chose a count (``OMP_NUM_THREADS``, which torch reads itself); larger
models keep torch's default, where the threads do useful work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

SMALL_MODEL_PARAMETERS = 20_000_000
"""Below this many parameters a model runs on one CPU thread (BLIP ViT-B has about 224 million)."""


def parameter_count(model: Any) -> int:
    """Parameters of the torch modules a model object holds as attributes (itself, if it is
    one); plugins need not declare anything."""
    import torch

    if isinstance(model, torch.nn.Module):
        modules = [model]
    else:
        modules = [value for value in getattr(model, "__dict__", {}).values() if isinstance(value, torch.nn.Module)]
    seen: set[int] = set()
    total = 0
    for module in modules:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
    return total


def cpu_threads(device: str, parameters: int, environ: Mapping[str, str] = os.environ) -> int | None:
    """The thread count to set, or None to leave torch's choice: 1 for a small model on the
    CPU when the user has not set ``OMP_NUM_THREADS``."""
    if not device.startswith("cpu") or environ.get("OMP_NUM_THREADS"):
        return None
    return 1 if parameters < SMALL_MODEL_PARAMETERS else None


def apply_cpu_threads(device: str, model: Any) -> None:
    """Set torch's intra-op threads by ``cpu_threads`` for the model just built."""
    threads = cpu_threads(device, parameter_count(model))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
