"""Run configuration and protocol overrides.

The paper's protocol is each task's default; a model may adjust it (a tiny test model runs at a
small resolution) and the user has the last word with ``--set key=value``. The merged protocol is
what runs and what the result records.
"""

from __future__ import annotations

import difflib
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class RunConfig:
    """Everything ``harness run`` was asked; saved as ``run.json`` so ``--resume`` can repeat it."""

    model: str
    tasks: str
    weights: str | None = None
    data_root: str | None = None
    toy: bool = False
    split: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    """Images (or samples) per model call; None: ``default_batch_size`` of the device."""
    num_workers: int = 0
    limit: int | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    output: str = "results/runs"
    quiet: bool = False
    skip_bad: bool = False
    flush_every: int = 64
    feature_cache: str | None = None
    """Directory of the on-disk vision-feature cache (``harness.cache``), ``auto`` for
    ``$HARNESS_CACHE/features``, or None (off). Not protocol: it changes speed, not results."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256
"""Batch sizes when ``--batch-size`` is not given. On a GPU, beam search and the ITM re-rank are
bound by per-call overhead at small batches (bench/README.md), and a batch that does not fit is
halved automatically, so the GPU default is large."""


def default_batch_size(device: str) -> int:
    return GPU_BATCH_SIZE if device.startswith("cuda") else CPU_BATCH_SIZE


def split_names(values: Sequence[str] | None) -> list[str]:
    """Option values given repeated and/or comma-separated (``--log a --log b,c``), flattened in
    order, blanks and repeats dropped."""
    return list(dict.fromkeys(name.strip() for value in values or () for name in value.split(",") if name.strip()))


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["k_test=128", "prompt=a photo of "]`` -> a dict; values are JSON when they parse as JSON
    (numbers, true/false, null, lists), strings otherwise."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set k_test=128")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key] = value
    return overrides


def _coerce(key: str, value: Any, default: Any, task: str) -> Any:
    """Give an override the type of the default it replaces, so ``--set k_test=128.0`` cannot
    silently become a float where the code expects a count."""
    if default is None or value is None:
        return value
    if isinstance(default, str):
        # A string default may stand for a choice with boolean members (spice: auto|true|false).
        return value if isinstance(value, (str, bool)) else str(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"task {task!r}: --set {key}={value!r}: expected true or false")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"task {task!r}: --set {key}={value!r}: expected an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"task {task!r}: --set {key}={value!r}: expected a number")
    return value


def merge_protocol(
    task: str,
    defaults: Mapping[str, Any],
    model_overrides: Mapping[str, Any],
    user_overrides: Mapping[str, Any],
    *,
    strict: bool = True,
) -> dict[str, Any]:
    """Task defaults <- model adjustments <- user overrides. With ``strict``, an unknown user key is
    an error (a typo must not silently run the default protocol); when several tasks run at once,
    a key is only required to exist in at least one of them (checked by the caller)."""
    protocol = dict(defaults)
    for key, value in model_overrides.items():
        if key in protocol:
            protocol[key] = value
    for key, value in user_overrides.items():
        if key not in protocol:
            if strict:
                close = difflib.get_close_matches(key, list(protocol), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"task {task!r} has no protocol key {key!r}{hint} (keys: {', '.join(sorted(protocol))})"
                )
            continue
        protocol[key] = _coerce(key, value, defaults[key], task)
    return protocol


SEED_RANGE = (0, 2**32 - 1)
"""The seeds every generator the harness seeds accepts (NumPy's legacy seeding is the narrowest)."""


def check_run_options(config: RunConfig) -> None:
    """Every option of ``harness run`` (or of a ``run.json`` given to ``--resume``) that the parser
    cannot check, before any data or weights load: types, ranges and names."""
    counts = (("--batch-size", config.batch_size, 1, True), ("--num-workers", config.num_workers, 0, False),
              ("--limit", config.limit, 1, True), ("--flush-every", config.flush_every, 1, False),
              ("--seed", config.seed, SEED_RANGE[0], False))
    for flag, value, minimum, optional in counts:
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{flag} must be an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{flag} must be at least {minimum}")
    if config.seed > SEED_RANGE[1]:
        raise ConfigError(f"--seed must be at most {SEED_RANGE[1]} (2**32 - 1)")
    if config.device not in DEVICES:
        raise ConfigError(f"--device {config.device!r}: expected one of {', '.join(DEVICES)}")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"--precision {config.precision!r}: expected one of {', '.join(PRECISIONS)}")
    for flag, value in (("--model", config.model), ("--task", config.tasks), ("--output", config.output)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{flag} {value!r}: expected a non-empty string")
    if not isinstance(config.overrides, dict):
        raise ConfigError(f"--set: expected key=value settings, got {config.overrides!r}")


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """bf16 by default on GPU (the fast path), fp32 on CPU (faithful, and CPU bf16 is slow)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return precision


def check_output_dir(path: Path, what: str = "output directory") -> Path:
    """Create the directory (``what`` says which: the output, the feature cache) or fail with one
    line naming it and saying why."""
    from harness.errors import OutputError

    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{what} {path} is not writable ({exc.strerror or exc})") from exc
    return path
