"""Errors the harness reports to the user as one clear line, and the exit codes they map to.

Every failure a user can cause (bad input, a missing file, an incompatible model) is raised as a
``HarnessError`` subclass so the CLI can print one line and exit with the documented code
instead of a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of ``harness`` commands."""

    OK = 0
    """Every task ran and every gate passed."""
    GATE_FAILED = 1
    """A metric fell outside its tolerance (``harness regress``) or a run failed its gate."""
    USAGE = 2
    """Usage or input error: unknown name, malformed option, missing or malformed data, bad weights."""
    INTERRUPTED = 3
    """Interrupted (SIGINT/SIGTERM); finished predictions are kept and the run can be resumed."""


class HarnessError(Exception):
    """An error whose message is complete enough to be the only line the user sees."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(HarnessError):
    """A malformed option, ``--set`` override, or an unknown model, task or split."""


class CapabilityError(HarnessError):
    """A model lacks a capability the task needs; raised before any data or weights are loaded."""


class DataError(HarnessError):
    """An annotation file, record, image or video is missing or malformed."""


class ModelLoadError(HarnessError):
    """Weights are missing, corrupt, unsafe, or of another architecture."""


class OutputError(HarnessError):
    """The output directory cannot be written, or another run is writing into it."""


class ResourceError(HarnessError):
    """The accelerator ran out of memory even at batch size 1."""


class Interrupted(HarnessError):
    """The run was stopped by a signal after flushing what it had finished."""

    exit_code = ExitCode.INTERRUPTED
