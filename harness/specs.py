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
    rules: Mapping[str, Any] = field(default_factory=dict)
    """Protocol key -> a ``harness.protocol_rules.Rule`` saying what values the task accepts;
    checked (``validate_protocol``) before any data or weights load."""

    def build(self) -> Any:
        return resolve_factory(self.factory, f"task {self.name!r}")(self)
