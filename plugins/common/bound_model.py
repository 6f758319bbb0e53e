"""A loaded checkpoint bound to a device and a precision: what every model family's heads share.

BLIP's and BLIP-2's heads both keep the module, its tokenizer and its provenance (weights name,
files hashed into results, load notes), evaluate with BLIP's image transform, and autocast their
forward passes under ``bf16``/``fp16`` while ``fp32`` runs untouched, faithful to the checkpoint.
Written once here, so a third family gets the same behaviour by subclassing.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from harness.errors import ConfigError
from harness.specs import ModelRequest
from harness_plugins.common.preprocess import blip_pixels

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class LoadedCheckpoint(Protocol):
    """What a family's loader returns (``LoadedBlip``, ``LoadedBlip2``)."""

    module: torch.nn.Module
    tokenizer: Any
    weights_name: str
    weights_files: Sequence[Path]
    notes: Sequence[str]


class BoundModel:
    """The module on ``request.device`` in eval mode, with the request's precision and protocol.

    Inputs may live anywhere; methods move them to the model's device.
    """

    def __init__(self, loaded: LoadedCheckpoint, request: ModelRequest, image_size: int) -> None:
        if request.precision not in PRECISIONS:
            raise ConfigError(f"precision {request.precision!r} is not one of {', '.join(PRECISIONS)}")
        self.device = torch.device(request.device)
        self.precision = request.precision
        self.module = loaded.module.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.image_size = image_size
        self.protocol = dict(request.protocol)
        self.weights_name: str = loaded.weights_name
        self.weights_files: list[Path] = list(loaded.weights_files)
        self.notes: list[str] = list(loaded.notes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights_name!r}, device={self.device}, precision={self.precision})"

    # ImagePreprocessor
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return blip_pixels(images, self.image_size)

    def autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])
