"""Every hook a harness plugin can implement; this file is the whole plugin contract.

Plugins are found through the ``harness`` entry-point group (``[project.entry-points.harness]``)
and implement these hooks with ``@harness.hookimpl``. The built-in BLIP, CLIP and task plugins
register exactly this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from harness.registry import Registry

PROJECT = "harness"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def harness_register_models(registry: Registry) -> None:
    """Add models with ``registry.add_model(ModelSpec(...))``.

    Called once when the registry is first used. A spec must be cheap to build: name its factory
    as ``"module:callable"`` so listing models imports nothing heavy.
    """


@hookspec
def harness_register_tasks(registry: Registry) -> None:
    """Add tasks with ``registry.add_task(TaskSpec(...))``; same rules as models."""


@hookspec
def harness_register_baselines(registry: Registry) -> None:
    """Add published-result tables with ``registry.add_baselines(path)`` (JSON in the schema of
    ``results/baselines/``) so ``harness compare`` can show them."""


@hookspec
def harness_add_commands(
    subparsers: argparse._SubParsersAction, toy_subparsers: argparse._SubParsersAction
) -> None:
    """Add CLI subcommands: top-level ones to ``subparsers`` (BLIP's ``harness convert``) and
    toy-suite actions to ``toy_subparsers`` (BLIP's ``harness toy train``). Each added parser must
    set ``func=callable(args) -> int`` with ``set_defaults``; the callable returns an exit code.
    An implementation may accept only the arguments it uses."""


@hookspec
def harness_run_finished(record: dict[str, Any]) -> None:
    """Called on every process-0 result record after it is written (loggers: W&B, TensorBoard).

    ``record`` is the JSON-ready dict of ``result.json``; exceptions raised here are reported as
    warnings and never fail the run.
    """
