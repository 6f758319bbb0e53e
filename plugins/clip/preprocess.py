"""CLIP's image preprocessing, written on PIL: resize the shorter side to S (bicubic), centre-crop
S x S, scale to [0, 1], normalise with CLIP's mean and std.

These are the steps of OpenAI's released ``clip`` package (the pipeline CLIP was trained and
evaluated with). transformers' ``CLIPImageProcessor`` is not used: in transformers 5 it needs
torchvision, which this project does not depend on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""CLIP's normalisation constants (BLIP reuses the same values)."""


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size``, keeping the aspect ratio; the longer side is
    truncated to an integer as the reference pipeline does."""
    width, height = image.size
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    return image.resize(new_size, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square (offsets rounded to the nearest pixel)."""
    width, height = image.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def clip_preprocess(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images -> (B, 3, size, size) float32 pixels, normalised for CLIP."""
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    pixels = []
    for image in images:
        square = center_crop(resize_shorter_side(image.convert("RGB"), size), size)
        array = np.asarray(square, dtype=np.float32) / 255.0
        pixels.append((torch.from_numpy(array).permute(2, 0, 1) - mean) / std)
    if not pixels:
        return torch.empty(0, 3, size, size)
    return torch.stack(pixels)
