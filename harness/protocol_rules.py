"""What each protocol value may be, declared beside the task's defaults and checked before any data
or weights load.

Why: ``--set`` gives a value the type of the default it replaces (``config._coerce``), but a type
is not a meaning. ``k_test=0`` is an integer, and VQA then ranks zero answers and fails deep inside
a tensor call after the data and the model have loaded, with a traceback. A task spec therefore
names a rule per protocol key (``TaskSpec.rules``) and ``validate_protocol`` checks the merged
protocol (task defaults <- model adjustments <- ``--set``) against them: the first value out of
range stops the run with one line naming the task, the key, the value and what is allowed.

Light on purpose: ``harness list`` imports the task specs, so nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from harness.errors import ConfigError


class Rule(Protocol):
    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        """What is wrong with ``value`` (in the context of the whole ``protocol``), or None."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Integer:
    """An integer in ``[minimum, maximum]``; ``at_most_key`` ties it to another key of the same
    protocol (``min_length`` <= ``max_length``)."""

    minimum: int | None = None
    maximum: int | None = None
    at_most_key: str | None = None

    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        if not _is_int(value):
            return "expected an integer"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        bound = protocol.get(self.at_most_key) if self.at_most_key else None
        if _is_int(bound) and value > bound:
            return f"must be at most {self.at_most_key} ({bound})"
        return None


@dataclass(frozen=True)
class Number:
    """A finite number in ``[minimum, maximum]``, or the open interval where ``*_open`` is set."""

    minimum: float | None = None
    maximum: float | None = None
    minimum_open: bool = False
    maximum_open: bool = False

    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        if not _is_number(value):
            return "expected a finite number"
        if self.minimum is not None and (value <= self.minimum if self.minimum_open else value < self.minimum):
            return f"must be {'greater than' if self.minimum_open else 'at least'} {self.minimum}"
        if self.maximum is not None and (value >= self.maximum if self.maximum_open else value > self.maximum):
            return f"must be {'less than' if self.maximum_open else 'at most'} {self.maximum}"
        return None


@dataclass(frozen=True)
class Choice:
    """One of ``options``; strings compare case-insensitively (a config file may write ``"True"``)."""

    options: tuple[Any, ...]

    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        for option in self.options:
            if value is option or (isinstance(option, str) and isinstance(value, str) and value.strip().lower() == option):
                return None
            if isinstance(option, bool) and isinstance(value, str) and value.strip().lower() == str(option).lower():
                return None
        return f"expected one of {', '.join(_show(o) for o in self.options)}"


@dataclass(frozen=True)
class Text:
    """Any string."""

    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        return None if isinstance(value, str) else "expected a string"


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        return None if isinstance(value, bool) else "expected true or false"


@dataclass(frozen=True)
class Either:
    """What any of ``rules`` accepts (``threshold``: "auto" or a number)."""

    rules: tuple[Rule, ...]

    def problem(self, value: Any, protocol: Mapping[str, Any]) -> str | None:
        problems = [rule.problem(value, protocol) for rule in self.rules]
        return None if None in problems else " or ".join(problems)


def _show(option: Any) -> str:
    return str(option).lower() if isinstance(option, bool) else repr(option)


POSITIVE = Integer(minimum=1)
NON_NEGATIVE = Integer(minimum=0)


def validate_protocol(task: str, protocol: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Raise ``ConfigError`` naming the first protocol value its rule refuses, e.g.
    ``task 'vqav2': protocol k_test=0 must be at least 1``. Keys without a rule pass."""
    for key, value in protocol.items():
        rule = rules.get(key)
        problem = rule.problem(value, protocol) if rule is not None else None
        if problem:
            raise ConfigError(f"task {task!r}: protocol {key}={value!r}: {problem} (change it with --set {key}=VALUE)")
