"""What the runner hands a task's ``evaluate``: protocol, device settings, progress bars, timed
stages, the checkpointed prediction store, and the share of samples this process owns."""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import DataError, ResourceError
from harness.predictions import PredictionStore
from harness.task import Dataset

if TYPE_CHECKING:
    from harness.cache import FeatureCache

T = TypeVar("T")
R = TypeVar("R")


def owner_rank(sample_id: str, world_size: int) -> int:
    """The process that evaluates a sample: a stable hash of its id, not its position, so a run
    can resume with a different number of processes."""
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % world_size


@dataclass
class StageTiming:
    seconds: float = 0.0
    items: int = 0

    def as_dict(self) -> dict[str, float]:
        rate = self.items / self.seconds if self.seconds > 0 else 0.0
        return {"seconds": round(self.seconds, 4), "items": self.items, "items_per_s": round(rate, 2)}


@dataclass
class RunContext:
    protocol: Mapping[str, Any]
    predictions: PredictionStore
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 32
    seed: int = 0
    num_workers: int = 0
    feature_cache: FeatureCache | None = None
    """Where vision features are reused across tasks and runs (``harness.cache``); None: off."""
    quiet: bool = False
    skip_bad: bool = False
    rank: int = 0
    world_size: int = 1
    timings: dict[str, StageTiming] = field(default_factory=dict)
    batch_size_used: int | None = None
    """``batch_size`` after the out-of-memory halvings so far; None until a batch has run."""
    halvings: int = 0
    """How often an out-of-memory error halved the batches; kept across calls so later stages
    start at the size that fits instead of failing again."""
    label: str = ""
    """Which task of the run this is, as ``[2/11] coco_captioning``: prefixes every progress line."""
    progress_seconds: float = 30.0
    """Plain progress lines (not on a terminal) come at most this often."""
    last_progress_line: float = field(default=-math.inf, repr=False)
    open_progress: int = field(default=0, repr=False)
    """Plain progress counters now open: a counter opened inside another (the captions of one
    encoded batch) stays silent, so the log follows the stage that measures the whole task."""

    def pending(self, dataset: Dataset) -> list[Any]:
        """Samples still to do for this process: not finished in an earlier attempt, owned here."""
        return [
            sample
            for sample in dataset.samples
            if sample.sample_id not in self.predictions
            and owner_rank(sample.sample_id, self.world_size) == self.rank
        ]

    def progress(self, iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
        """``iterable``, reporting progress on process 0 unless ``quiet``: a tqdm bar on an
        interactive terminal, plain lines on stdout otherwise (SLURM, nohup, CI logs). A bar
        without a name, or over a single step, tells nothing and is left out."""
        if self.quiet or self.rank != 0 or not desc or (total is not None and total <= 1):
            return iterable
        name = f"{self.label}: {desc}" if self.label else desc
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            return tqdm(iterable, total=total, desc=name, leave=False, dynamic_ncols=True)
        return PlainProgress(self, iterable, total, name)

    @contextmanager
    def stage(self, name: str, items: int = 0) -> Iterator[StageTiming]:
        """Time a stage; the result records its seconds and items per second."""
        timing = self.timings.setdefault(name, StageTiming())
        start = time.perf_counter()
        try:
            yield timing
        finally:
            timing.seconds += time.perf_counter() - start
            timing.items += items

    def skip_or_raise(self, sample_id: str, error: DataError) -> None:
        """A bad sample: skipped and counted under ``--skip-bad``, otherwise the run stops on it."""
        if not self.skip_bad:
            raise error
        self.predictions.skip(sample_id, str(error))

    def map_batches(
        self,
        items: Sequence[T],
        fn: Callable[[Sequence[T]], Sequence[R]],
        desc: str = "",
        batch_size: int | None = None,
    ) -> Iterator[tuple[Sequence[T], Sequence[R]]]:
        """Yield ``(batch, fn(batch))`` over ``items`` with a progress bar; on a GPU out-of-memory
        error the batch is halved and retried.

        ``batch_size`` (default: the run's) is this call's full size; every call is shrunk by the
        halvings so far, and ``batch_size_used`` records the run's batch size shrunk the same way,
        so the result speaks in ``--batch-size`` units whatever size a stage asks for."""
        requested = batch_size or self.batch_size
        size = max(1, requested >> self.halvings)
        bar = self.progress(range(len(items)), total=len(items), desc=desc)
        update = getattr(bar, "update", None)
        start = 0
        while start < len(items):
            batch = items[start : start + size]
            try:
                results = fn(batch)
            except Exception as exc:
                if not _is_out_of_memory(exc):
                    raise
                if len(batch) == 1:
                    raise ResourceError(
                        f"out of accelerator memory at batch size 1{f' ({desc})' if desc else ''}: "
                        "try --precision bf16, a smaller model, or a device with more memory"
                    ) from exc
                self.halvings += 1
                size = max(1, requested >> self.halvings)
                _free_cuda_cache()
                continue
            self.batch_size_used = max(1, self.batch_size >> self.halvings)
            if update is not None:
                update(len(batch))
            yield batch, results
            start += len(batch)
        close = getattr(bar, "close", None)
        if close is not None:
            close()


class PlainProgress:
    """Progress as plain lines on stdout, for logs: one at the stage's first step, then one every
    ``RunContext.progress_seconds`` at most, e.g. ``[2/11] coco_captioning: caption 64/5000
    (1 %), 3.2/s, about 25 min left``. Iterable like tqdm, or counted with ``update(n)``."""

    def __init__(self, ctx: RunContext, iterable: Iterable[Any], total: int | None, name: str) -> None:
        self.ctx, self.iterable, self.total, self.name = ctx, iterable, total, name
        self.done = 0
        self.started = time.monotonic()
        self.nested = ctx.open_progress > 0
        self.first = True
        self.closed = False
        ctx.open_progress += 1

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.nested or not (self.first or now - self.ctx.last_progress_line >= self.ctx.progress_seconds):
            return
        self.first = False
        self.ctx.last_progress_line = now
        print(self.line(now - self.started), flush=True)

    def line(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if not self.total:
            return f"{self.name} {self.done}, {rate:.1f}/s"
        left = f", about {_duration((self.total - self.done) / rate)} left" if rate > 0 and self.done < self.total else ""
        return f"{self.name} {self.done}/{self.total} ({100 * self.done // self.total} %), {rate:.1f}/s{left}"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ctx.open_progress -= 1


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(exc, torch.OutOfMemoryError)


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
