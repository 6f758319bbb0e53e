"""What a plugin registers: specifications of models and tasks, and the request a model factory gets.

Specs are cheap descriptions. Their factories are named lazily as ``"module:attribute"`` so that
``harness list`` and the capability check import nothing heavy (no torch, no transformers).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError

Factory = str | Callable[..., Any]


def resolve_factory(factory: Factory, owner: str) -> Callable[..., Any]:
    """Import a ``"module:attribute"`` factory on first use; callables pass through."""
    if callable(factory):
        return factory
    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{owner}: factory {factory!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{owner}: cannot import {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigError(f"{owner}: module {module_name!r} has no {attribute!r}") from exc


@dataclass(frozen=True)
class ModelRequest:
    """Everything a model factory needs to build a model for one task.

    ``task`` lets a preset pick task-specific fine-tuned weights (BLIP has one checkpoint per
    task); ``protocol`` carries the task's settings such as ``image_size``.
    """

    task: str
    protocol: Mapping[str, Any]
    weights: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    seed: int = 0


@dataclass(frozen=True)
class PublishedRow:
    """A row of a baseline table (``results/baselines/*.json``), named by table and row label."""

    table: str
    model: str

    def as_json(self) -> dict[str, str]:
        return {"table": self.table, "model": self.model}


@dataclass(frozen=True)
class Caveat:
    """Something a reader must know to interpret a number (VQA val with a checkpoint that trained
    on it), said by the spec that knows it so records and tables repeat it instead of guessing.

    ``tasks`` and ``splits`` limit where it applies; empty means every task or split.
    """

    text: str
    tasks: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()

    def applies(self, task: str, split: str) -> bool:
        return (not self.tasks or task in self.tasks) and (not self.splits or split in self.splits)


@dataclass(frozen=True)
class ModelSpec:
    """A model plugin entry: ``factory(ModelRequest)`` returns an object implementing the listed
    capabilities (names from ``harness.capabilities.CAPABILITIES``)."""

    name: str
    factory: Factory
    description: str
    capabilities: tuple[str, ...]
    default_weights: Mapping[str, str] = field(default_factory=dict)
    """Task name (or ``"*"``) -> the weights used when ``--weights`` is not given; for listing."""
    protocol_overrides: Mapping[str, Any] = field(default_factory=dict)
    """Protocol keys this model changes for every task (a tiny test model runs at 64 px, not
    384); applied over the task's defaults and under the user's ``--set``, and recorded."""
    baseline_rows: Mapping[str, PublishedRow] = field(default_factory=dict)
    """Task name (or ``"*"``) -> the published row that the default weights of that task
    reproduce, so ``harness compare`` measures a run against its own model, not another's."""
    caveats: tuple[Caveat, ...] = ()
    """What a reader must know about the default weights on a task or split; recorded per run."""

    task_protocol_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Task name -> protocol keys this model changes for that task only, over ``protocol_overrides``
    (BLIP-2 evaluates VQA at 224 px but retrieval and captioning at 364)."""

    missing_weights: Factory | None = None
    """``"module:function"`` taking a ``ModelRequest`` and returning None when the weights that
    request would load are here, else one line naming them and the exact command that fetches
    them; ``harness run`` asks it for every task before loading any weights, so all missing
    checkpoints are reported at once. None: the model needs no files (or cannot tell)."""

    def baseline_row(self, task: str) -> PublishedRow | None:
        return self.baseline_rows.get(task, self.baseline_rows.get("*"))

    def protocol_for(self, task: str) -> dict[str, Any]:
        """The protocol changes this model makes for ``task``."""
        return {**self.protocol_overrides, **self.task_protocol_overrides.get(task, {})}

    def weights_problem(self, request: ModelRequest) -> str | None:
        if self.missing_weights is None:
            return None
        return resolve_factory(self.missing_weights, f"model {self.name!r}")(request)

    def build(self, request: ModelRequest) -> Any:
        return resolve_factory(self.factory, f"model {self.name!r}")(request)


@dataclass(frozen=True)
class TaskSpec:
    """A task plugin entry: ``factory(spec)`` returns a ``harness.task.Task``."""

    name: str
    factory: Factory
    description: str
    capabilities: tuple[str, ...]
    protocol: Mapping[str, Any]
    """The paper's settings; every key is overridable with ``--set`` and recorded in the result."""
    splits: tuple[str, ...]
    default_split: str
    data_dir: str
    """Folder under ``--data-root`` that holds this task's annotations and media."""
    headline_metrics: tuple[str, ...] = ()
    """The metrics a summary shows (the paper's columns); the record keeps every metric."""
    caveats: tuple[Caveat, ...] = ()
    """What a reader must know about a split's numbers (NoCaps val is not the test server's)."""
    programs: Mapping[str, str] = field(default_factory=dict)
    """External programs the task runs (name on PATH -> why, and how to install it); ``harness
    run`` looks them up before any weights load, so scoring cannot fail for want of one hours
    later."""
    rules: Mapping[str, Any] = field(default_factory=dict)
    """Protocol key -> a ``harness.protocol_rules.Rule`` saying what values the task accepts;
    checked (``validate_protocol``) before any data or weights load."""

    def build(self) -> Any:
        return resolve_factory(self.factory, f"task {self.name!r}")(self)
