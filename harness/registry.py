"""The plugin manager: loads plugins from the ``harness`` entry points, collects their model and
task specs, and checks that a model can run a task before anything heavy is loaded."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

import pluggy

from harness import hookspecs
from harness.capabilities import CAPABILITIES
from harness.errors import CapabilityError, ConfigError
from harness.specs import ModelSpec, TaskSpec


def _unknown(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known) or 'none'})")


class Registry:
    """Model and task specs from every plugin, looked up by name."""

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self.pm = plugin_manager
        self.models: dict[str, ModelSpec] = {}
        self.tasks: dict[str, TaskSpec] = {}
        self.baseline_files: list[Path] = []
        self._collected = False

    def add_model(self, spec: ModelSpec) -> None:
        self._check_new("model", spec.name, self.models, spec.capabilities)
        self.models[spec.name] = spec

    def add_task(self, spec: TaskSpec) -> None:
        self._check_new("task", spec.name, self.tasks, spec.capabilities)
        if spec.default_split not in spec.splits:
            raise ConfigError(f"task {spec.name!r}: default split {spec.default_split!r} not in {spec.splits}")
        self.tasks[spec.name] = spec

    def add_baselines(self, path: Path) -> None:
        self.baseline_files.append(Path(path))

    @staticmethod
    def _check_new(kind: str, name: str, existing: dict, capabilities: Iterable[str]) -> None:
        if name in existing:
            raise ConfigError(f"{kind} {name!r} is registered twice")
        unknown = [c for c in capabilities if c not in CAPABILITIES]
        if unknown:
            raise ConfigError(f"{kind} {name!r} names unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")

    def collect(self) -> Registry:
        """Ask every plugin for its specs, once."""
        if not self._collected:
            self._collected = True
            self.pm.hook.harness_register_models(registry=self)
            self.pm.hook.harness_register_tasks(registry=self)
            self.pm.hook.harness_register_baselines(registry=self)
        return self

    def model(self, name: str) -> ModelSpec:
        self.collect()
        if name not in self.models:
            raise _unknown("model", name, self.models)
        return self.models[name]

    def task(self, name: str) -> TaskSpec:
        self.collect()
        if name not in self.tasks:
            raise _unknown("task", name, self.tasks)
        return self.tasks[name]

    def resolve_tasks(self, names: str) -> list[TaskSpec]:
        """``"a,b"`` or ``"all"`` -> specs, in the order given (registration order for all)."""
        self.collect()
        if names.strip() == "all":
            return list(self.tasks.values())
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        if not wanted:
            raise ConfigError("--task needs at least one task name (or 'all')")
        return [self.task(n) for n in wanted]

    def check_fit(self, model: ModelSpec, task: TaskSpec) -> None:
        """Refuse a model that lacks a capability the task needs, naming what is missing."""
        missing = [c for c in task.capabilities if c not in model.capabilities]
        if missing:
            raise CapabilityError(
                f"model {model.name!r} cannot run {task.name!r}: it lacks {', '.join(missing)}"
            )


def check_instance(model: object, model_name: str, task: TaskSpec) -> None:
    """After building: the object really implements what its spec declared."""
    missing = [c for c in task.capabilities if not isinstance(model, CAPABILITIES[c])]
    if missing:
        raise CapabilityError(
            f"model {model_name!r} built for {task.name!r} does not implement {', '.join(missing)}"
        )


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry built from installed entry points."""
    global _default
    if _default is None:
        _default = Registry(make_plugin_manager())
    return _default
