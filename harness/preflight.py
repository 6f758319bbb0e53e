"""Checks before computing: everything ``harness run`` can find wrong without a forward pass is
found before the first weights load, and all of one kind are reported at once.

A run on real data takes hours. Java missing at the scoring step, the third of four checkpoints
not downloaded, or a corrupt image at sample 40,000 each used to cost the hours before them; here
they cost seconds. Order: external programs, weights (all missing ones in one line, each with the
command that fetches it), then the data of every task (``harness data check``'s checks).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError, ModelLoadError
from harness.specs import ModelRequest, ModelSpec, TaskSpec
from harness.task import CheckNote

_SHOWN = 3
"""Problems quoted per task in the one-line error; ``harness data check`` lists them all."""


@dataclass(frozen=True)
class PlannedTask:
    """A task as the run will evaluate it: the split and merged protocol it will use."""

    spec: TaskSpec
    split: str
    protocol: Mapping[str, Any]


def data_check(spec: TaskSpec, data_root: Path, split: str, protocol: Mapping[str, Any]) -> list[str]:
    """``harness data check``'s lines for one task's split: problems, and ``CheckNote`` remarks
    that are not problems."""
    if not (data_root / spec.data_dir).is_dir():
        return [f"missing directory {data_root / spec.data_dir} (expected the layout in docs/datasets.md)"]
    return list(spec.build().check(data_root, split, dict(protocol)))


def missing_programs(tasks: Sequence[TaskSpec], which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """One line per program that some requested task runs and that is not on PATH."""
    needed: dict[str, tuple[str, list[str]]] = {}
    for spec in tasks:
        for program, why in spec.programs.items():
            needed.setdefault(program, (why, []))[1].append(spec.name)
    return [
        f"`{program}` is not on PATH but {', '.join(names)} need{'s' if len(names) == 1 else ''} it ({why})"
        for program, (why, names) in needed.items()
        if which(program) is None
    ]


def missing_weights(model: ModelSpec, requests: Sequence[ModelRequest]) -> list[str]:
    """The model plugin's line for every distinct missing checkpoint the requests would load."""
    return list(dict.fromkeys(line for request in requests if (line := model.weights_problem(request)) is not None))


def check_before_computing(
    model: ModelSpec,
    tasks: Sequence[PlannedTask],
    data_root: Path,
    *,
    weights: str | None,
    skip_bad: bool,
    report: Callable[[str], None],
) -> None:
    """Raise one ``HarnessError`` line naming everything that would stop the run later.

    Programs and weights first (cheap), then every task's data. Under ``skip_bad`` data problems
    do not stop the run: a line says how many samples will be left out. Content/extension
    mismatches are counted in a line, never an error.
    """
    programs = missing_programs([task.spec for task in tasks])
    if programs:
        raise ConfigError("; ".join(programs))
    requests = [ModelRequest(task=task.spec.name, protocol=task.protocol, weights=weights) for task in tasks]
    absent = missing_weights(model, requests)
    if absent:
        raise ModelLoadError(
            f"{len(absent)} checkpoint(s) needed by this run are not here (the harness never downloads): "
            + "; ".join(absent)
        )
    failed: list[str] = []
    for task in tasks:
        if not skip_bad and (data_root / task.spec.data_dir).is_dir():
            # The first malformed record stops the run with the load's own precise line.
            task.spec.build().load(data_root, task.split, dict(task.protocol), skip_bad=False)
        lines = data_check(task.spec, data_root, task.split, task.protocol)
        problems = [line for line in lines if not isinstance(line, CheckNote)]
        notes = len(lines) - len(problems)
        where = f"{task.spec.name} [{task.split}]"
        if notes:
            report(f"{where}: note: {notes} file(s) whose content differs from their extension; read by content")
        if not problems:
            continue
        if skip_bad:
            report(f"{where}: {len(problems)} data problem(s) found; their samples will be skipped (--skip-bad)")
            continue
        more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        failed.append(f"{where}: {len(problems)} problem(s): {' | '.join(problems[:_SHOWN])}{more}")
    if failed:
        names = ",".join(task.spec.name for task in tasks)
        raise DataError(
            f"data check failed before any weights loaded: {'; '.join(failed)} "
            f"(every problem: `harness data check --task {names} --data-root {data_root}`; "
            "--skip-bad leaves those samples out)"
        )
