"""``harness run --log NAME``: logger plugins, switched on by name for one invocation.

A logger is a plugin module implementing ``harness_run_finished(record)`` (``harness.hookspecs``)
and registered under the entry-point group ``harness.loggers`` (the built-in TensorBoard and
Weights & Biases loggers are, in ``pyproject.toml``). Unlike the plugins of the ``harness`` group,
loggers are not loaded on every command: ``--log`` loads the named ones before any data or
weights, so a missing optional package stops the run at once with the extra to install.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from harness.errors import ConfigError
from harness.registry import Registry

LOGGER_GROUP = "harness.loggers"


def available_loggers() -> dict[str, EntryPoint]:
    """Installed loggers by name."""
    return {entry.name: entry for entry in entry_points(group=LOGGER_GROUP)}


def enable_loggers(names: Sequence[str], registry: Registry) -> None:
    """Load each named logger and register it with the registry's plugin manager, so the runner's
    ``harness_run_finished`` call reaches it. An unknown name, or a logger whose optional
    package is not installed, is a ``ConfigError`` (exit 2) naming what to do."""
    loggers = available_loggers()
    for name in names:
        if name not in loggers:
            close = difflib.get_close_matches(name, loggers, n=2)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"--log {name!r}: no such logger{hint} (installed: {', '.join(sorted(loggers)) or 'none'})")
        entry = loggers[name]
        try:
            module = entry.load()
        except ImportError as error:
            distribution = entry.dist.name if entry.dist is not None else "the package providing it"
            raise ConfigError(
                f"--log {name} needs a package that is not installed ({error}); "
                f"install it with: pip install '{distribution}[{name}]'"
            ) from None
        if not registry.pm.is_registered(module):
            registry.pm.register(module, name=f"{LOGGER_GROUP}.{name}")


def run_name(record: Mapping[str, Any]) -> str:
    """One name per result record, the same in every logger: model, task, split and when the
    record was written (two runs of one task differ in it), in characters any logger accepts."""
    created = re.sub(r"[^0-9T]", "", str(record.get("created", "")).split("+")[0])
    return f"{record['model']}__{record['task']}__{record['split']}__{created}"


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a record's mapping (metrics, reference levels), as floats."""
    return {key: float(value) for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
