"""BLIP's evaluation preprocessing, written out: RGB, PIL bicubic resize to S x S, scale to [0, 1],
normalise with BLIP's (CLIP's) mean and std.

transformers 5's ``BlipImageProcessor`` needs torchvision, and BLIP's own pipeline is torchvision's
``Resize((S, S), BICUBIC)`` on a PIL image, which is exactly ``PIL.Image.resize`` with BICUBIC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def blip_pixels(images: Sequence[Image.Image], image_size: int) -> torch.Tensor:
    """PIL images -> (B, 3, S, S) float32 pixels, normalised as BLIP evaluates."""
    if not images:
        return torch.empty(0, 3, image_size, image_size)
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    arrays = []
    for image in images:
        resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
        scaled = np.asarray(resized, dtype=np.float32) / 255.0
        arrays.append((scaled - mean) / std)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
