"""The images that image-task samples refer to: encoded once each during a run, opened one by one
for a data check.

Several samples often share an image (a VQA image has several questions, a VisDial image ten
rounds, NLVR2 images recur across statements), and NLVR2 samples need two. Encoding each image
once and handing a sample to its head only when all its images are encoded keeps the vision
encoder's work to one pass over the unique images, whatever the task.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from harness.cache import cached_batches, feature_store
from harness.capabilities import VisualFeatures
from harness.errors import DataError
from harness.media import image_format_note, load_image, pixel_batches
from harness.task import CheckNote, Dataset, Task

if TYPE_CHECKING:
    from harness.cache import FeatureStore
    from harness.context import RunContext


class ImageSample(Protocol):
    """A sample whose model input includes images: one for most tasks, (left, right) for NLVR2."""

    sample_id: str
    images: tuple[Path, ...]


S = TypeVar("S", bound=ImageSample)
Gather = Callable[[Sequence[S]], list[VisualFeatures]]


def encoded_samples(
    model: Any, samples: Sequence[S], ctx: RunContext, desc: str = "encode images"
) -> Iterator[tuple[list[S], Gather[S]]]:
    """Encode the unique images of ``samples`` in batches and yield samples as they become ready.

    Yields ``(ready, gather)``: ``ready`` are samples whose images are all encoded, and
    ``gather(chunk)`` returns, for any sub-list of ``ready``, one ``VisualFeatures`` per image
    slot whose rows align with ``chunk`` (so a head can be called on chunks of any size, and
    again on smaller ones after an out-of-memory error). A sample with an unreadable image is
    passed to ``ctx.skip_or_raise`` with the file's error and the sample's id. Features are
    dropped as soon as no remaining sample needs them. With a feature cache, cached images come
    first, read from disk instead of decoded and encoded.
    """
    unique = list(dict.fromkeys(path for sample in samples for path in sample.images))
    store = feature_store(ctx, model, media="image")
    cached, to_encode = store.split(unique) if store is not None else ([], unique)
    order = cached + to_encode
    position = {path: number for number, path in enumerate(order)}
    # A sample is ready once the last of its images is encoded; sorting by that image's position
    # makes samples ready in order as the batches go by.
    queue = sorted(samples, key=lambda sample: max(position[path] for path in sample.images))
    uses = Counter(path for sample in queue for path in set(sample.images))
    features: dict[Path, tuple[VisualFeatures, int]] = {}
    failed: dict[Path, DataError] = {}

    def gather(chunk: Sequence[S]) -> list[VisualFeatures]:
        return [_stack_rows([features[sample.images[slot]] for sample in chunk]) for slot in range(len(chunk[0].images))]

    batches = _visual_batches(model, cached, to_encode, store, ctx)
    done = 0
    next_sample = 0
    total = math.ceil(len(cached) / ctx.batch_size) + math.ceil(len(to_encode) / ctx.batch_size)
    for good, visual, failures in ctx.progress(batches, total=total, desc=desc):
        failed.update(failures)
        if visual is not None:
            features.update((path, (visual, row)) for row, path in enumerate(good))
        done += len(good) + len(failures)
        ready: list[S] = []
        finished: list[S] = []
        while next_sample < len(queue) and max(position[p] for p in queue[next_sample].images) < done:
            sample = queue[next_sample]
            next_sample += 1
            finished.append(sample)
            bad = next((path for path in sample.images if path in failed), None)
            if bad is None:
                ready.append(sample)
            else:
                ctx.skip_or_raise(sample.sample_id, DataError(f"{failed[bad]} (needed by sample {sample.sample_id})"))
        if ready:
            yield ready, gather
        for sample in finished:
            for path in set(sample.images):
                uses[path] -= 1
                if uses[path] == 0:
                    features.pop(path, None)
        # Images still needed by later samples keep a copy of their own row, so a batch's tensors
        # are freed as soon as its samples are done however few of its images recur later.
        for path, (visual, row) in features.items():
            if len(visual.tokens) > 1:
                features[path] = (_rows(visual, row), 0)


def _visual_batches(
    model: Any, cached: list[Path], to_encode: list[Path], store: FeatureStore | None, ctx: RunContext
) -> Iterator[tuple[list[Path], VisualFeatures | None, list[tuple[Path, DataError]]]]:
    """``(images, their features, failures)`` per batch: ``cached`` read from ``store``, then
    ``to_encode`` decoded, encoded and (with a store) saved."""
    yield from cached_batches(store, cached, ctx)
    for good, pixels, failures in pixel_batches(to_encode, load_image, model.preprocess, ctx.batch_size, ctx.num_workers):
        visual = None
        if good:
            with ctx.stage("encode_images", items=len(good)):
                visual = encode_halving(ctx, model.encode_images, pixels)
            if store is not None:
                store.save(good, visual)
        yield good, visual, failures


def encode_halving(ctx: RunContext, encode: Callable[[Any], VisualFeatures], pixels: Any) -> VisualFeatures:
    """``encode(pixels)`` for one decoded batch, split in halves on accelerator out-of-memory."""
    return VisualFeatures.concat([part for _, part in ctx.map_batches(pixels, encode, batch_size=len(pixels))])


def _rows(visual: VisualFeatures, row: int) -> VisualFeatures:
    """An independent copy of one row of encoded features."""
    embeds = None if visual.embeds is None else visual.embeds[row : row + 1].clone()
    return VisualFeatures(embeds=embeds, tokens=visual.tokens[row : row + 1].clone())


def _stack_rows(rows: Sequence[tuple[VisualFeatures, int]]) -> VisualFeatures:
    """One VisualFeatures from chosen rows of (possibly different) encoded batches."""
    import torch

    tokens = torch.stack([visual.tokens[row] for visual, row in rows])
    if any(visual.embeds is None for visual, _ in rows):
        return VisualFeatures(embeds=None, tokens=tokens)
    return VisualFeatures(embeds=torch.stack([visual.embeds[row] for visual, row in rows]), tokens=tokens)


def unreadable_images(samples: Sequence[ImageSample], max_workers: int = 8) -> list[str]:
    """One problem line per image that does not decode, naming the samples that need it, and a
    ``CheckNote`` per image whose content is another format than its extension says."""
    users: dict[Path, list[str]] = {}
    for sample in samples:
        for path in sample.images:
            users.setdefault(path, []).append(sample.sample_id)

    def problem(path: Path) -> str | None:
        try:
            load_image(path)
        except DataError as error:
            needed = users[path]
            more = f" and {len(needed) - 3} more" if len(needed) > 3 else ""
            return f"{error} (needed by sample {', '.join(needed[:3])}{more})"
        note = image_format_note(path)
        return None if note is None else CheckNote(note)

    # PIL releases the GIL while decoding, so threads make checking a large split much faster.
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return [line for line in pool.map(problem, users) if line is not None]


class ImageTask(Task):
    """A task over image samples; its data check also decodes every image the split needs."""

    def check(self, data_root: Path, split: str, protocol: Mapping[str, Any]) -> list[str]:
        try:
            dataset: Dataset = self.load(data_root, split, protocol, skip_bad=True)
        except DataError as error:
            return [str(error)]
        problems = [f"{item.sample_id}: {item.reason}" for item in dataset.skipped]
        return problems + unreadable_images(dataset.samples)
