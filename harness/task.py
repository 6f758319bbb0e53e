"""The base class of task adapters and the validated dataset they load.

A task knows its data format and protocol, never a model's internals: ``evaluate`` calls only the
capability protocols of ``harness.capabilities`` and writes one prediction per sample id into the
run context's store, which checkpoints them so an interrupted run resumes where it stopped.
``score`` is pure: dataset + predictions -> metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.context import RunContext
    from harness.examples import ExampleSection
    from harness.specs import TaskSpec


class CheckNote(str):
    """A line of ``Task.check`` that is a remark, not a problem (an image whose content differs
    from its extension): printed by ``harness data check``, never counted against the data."""


@dataclass
class SkippedSample:
    """A sample left out under ``--skip-bad``, with the reason the user needs to fix it."""

    sample_id: str
    reason: str


@dataclass
class Dataset:
    """Validated records of one split.

    ``samples`` are task-defined records, each with a unique string ``sample_id`` attribute.
    ``fingerprint`` is a SHA-256 over the annotation files, so result records can tell whether
    two runs saw the same data.
    """

    task: str
    split: str
    root: Path
    samples: list[Any]
    fingerprint: str
    skipped: list[SkippedSample] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_ids(self) -> list[str]:
        return [sample.sample_id for sample in self.samples]


class Task(ABC):
    """One task family member (e.g. ``coco_retrieval``), built from its registered spec."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        """Read and validate the split's annotations under ``data_root / spec.data_dir``.

        A malformed record raises ``DataError`` naming the file, the record and what was expected;
        with ``skip_bad`` it is skipped and listed in ``Dataset.skipped`` instead.
        """

    def check(self, data_root: Path, split: str, protocol: Mapping[str, Any]) -> list[str]:
        """Problems found in every record and every referenced media file, for
        ``harness data check``; the split is ready for a long run when every line is a
        ``CheckNote`` (or there is none)."""
        dataset = self.load(data_root, split, protocol, skip_bad=True)
        return [f"{item.sample_id}: {item.reason}" for item in dataset.skipped]

    @abstractmethod
    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        """Compute predictions for the samples ``ctx.pending(dataset)`` returns and store them
        with ``ctx.predictions.add``; batched, with ``ctx.progress`` on long loops."""

    @abstractmethod
    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """Metrics (percent, as the paper reports them) from the stored predictions."""

    def reference_levels(
        self, dataset: Dataset, protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """Chance or majority-answer level of each metric on this data, recorded beside the
        metrics so a reader can see how far above chance a model is. Empty if not meaningful."""
        return {}

    def per_sample_metrics(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """Per-sample values of the metrics that are means over samples (sample id -> metric ->
        value), for bootstrap confidence intervals in ``harness compare --ci``."""
        return {}

    def write_outputs(
        self, dataset: Dataset, predictions: Mapping[str, Any], run_dir: Path
    ) -> list[Path]:
        """Extra files in a benchmark's own format (COCO caption results, the VQA submission
        file); returns the paths written."""
        return []

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """The ``worst`` and ``best`` evaluated samples as a person would look at them (pictures,
        the model's output, the ground truth), for ``harness report``; built with
        ``harness.examples.section``. Empty when the task has nothing to show."""
        return []
