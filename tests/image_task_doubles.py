"""Test doubles of the model side for the image-task tests, and the runner's steps in small.

The doubles implement the capability protocols with real logic on real tensors: images are
resized and normalised like a model's input, "encoded" into token features, and heads decide
from those features (the colour of a flat image) or from what a test tells them (an oracle). They
count their calls so tests can check that images are encoded once and that a resumed run
recomputes nothing. ``blip_tiny`` builds the real (toy-size) BLIP model for the end-to-end tests
on the toy suite.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from harness.capabilities import VisualFeatures
from harness.context import RunContext
from harness.predictions import PredictionStore
from harness.specs import TaskSpec
from harness_tasks.specs import TASK_SPECS

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 200),
    "yellow": (220, 220, 40),
}


class ColourEncoder:
    """ImagePreprocessor + ImageEncoder: 8x8 pixels in [0, 1], tokens = the 64 pixels' RGB."""

    image_size = 8

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [np.asarray(image.resize((8, 8), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0 for image in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        self.calls["encode_images"] += 1
        self.calls["images"] += len(pixels)
        tokens = pixels.flatten(2).transpose(1, 2)
        return VisualFeatures(embeds=torch.nn.functional.normalize(tokens.mean(1), dim=-1), tokens=tokens)

    @staticmethod
    def colour_names(visual: VisualFeatures) -> list[str]:
        """The named colour nearest to each image's mean colour."""
        names = list(COLOURS)
        table = torch.tensor([COLOURS[name] for name in names], dtype=torch.float32) / 255.0
        nearest = torch.cdist(visual.tokens.mean(1), table).argmin(dim=1)
        return [names[i] for i in nearest.tolist()]


def task_spec(name: str) -> TaskSpec:
    return next(spec for spec in TASK_SPECS if spec.name == name)


def make_context(run_dir: Path, protocol: Mapping[str, Any], **settings: Any) -> RunContext:
    run_dir.mkdir(parents=True, exist_ok=True)
    settings.setdefault("batch_size", 2)
    return RunContext(protocol=dict(protocol), predictions=PredictionStore(run_dir), quiet=True, **settings)


def evaluate_and_score(task: Any, dataset: Any, model: Any, ctx: RunContext) -> tuple[dict[str, Any], dict[str, float]]:
    """``evaluate`` then ``score`` on the predictions of the dataset's samples, as the runner does."""
    task.evaluate(model, dataset, ctx)
    store = ctx.predictions
    predictions = {sid: store.predictions[sid] for sid in dataset.sample_ids if sid in store.predictions}
    return predictions, task.score(dataset, predictions, ctx.protocol)


def write_corrupt_image(path: Path) -> Path:
    """A .jpg whose JPEG data stops after the header: it exists, but does not decode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:40])
    return path


def blip_tiny(task: str, protocol: Mapping[str, Any], seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """The ``blip-tiny`` model for ``task``, built through the registry as the runner builds it,
    and the protocol the runner would hand the task (the preset's overrides applied)."""
    from harness.registry import check_instance, get_registry
    from harness.specs import ModelRequest

    registry = get_registry().collect()
    spec = registry.model("blip-tiny")
    merged = {**protocol, **spec.protocol_overrides}
    model = spec.build(ModelRequest(task=task, protocol=merged, seed=seed))
    check_instance(model, spec.name, registry.task(task))
    return model, merged
