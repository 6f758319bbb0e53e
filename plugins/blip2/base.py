"""What both BLIP-2 heads share: preprocessing, the ViT pass, the Q-Former's query pass, device
and precision.

Each head (``retrieval.py``, ``generation.py``) subclasses ``Blip2Model`` and adds only its
capability methods, so a model object offers exactly the capabilities its weights support.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from harness.errors import ConfigError
from harness.specs import ModelRequest
from harness_plugins.blip.heads.base import PRECISIONS
from harness_plugins.blip2.loading import LoadedBlip2
from harness_plugins.common.preprocess import blip_pixels


class Blip2Model:
    """A loaded BLIP-2 head bound to a device and precision.

    BLIP-2 evaluates with BLIP's image transform (LAVIS's ``blip_image_eval``: bicubic resize to
    S x S, CLIP's mean and std). When the protocol's resolution differs from the checkpoint's, the
    ViT's position embeddings are interpolated on the fly. ``fp32`` runs unchanged; ``bf16``/
    ``fp16`` autocast the forward passes (transformers keeps the Q-Former in fp32 regardless).
    """

    head = ""

    def __init__(self, loaded: LoadedBlip2, request: ModelRequest, image_size: int) -> None:
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

    def vision_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, L, H) ViT features (after its final LayerNorm, LAVIS's ``ln_vision``)."""
        resized = pixels.shape[-1] != self.module.config.vision_config.image_size
        return self.module.vision_model(
            pixel_values=pixels.to(self.device), interpolate_pos_encoding=resized
        ).last_hidden_state

    def query_states(self, vision_tokens: torch.Tensor) -> torch.Tensor:
        """(B, Q, H_q) Q-Former outputs of the learned queries attending to the image."""
        queries = self.module.query_tokens.expand(vision_tokens.shape[0], -1, -1)
        return self.module.qformer(
            query_embeds=queries,
            encoder_hidden_states=vision_tokens,
            encoder_attention_mask=self.all_ones(vision_tokens),
        ).last_hidden_state

    @staticmethod
    def all_ones(tokens: torch.Tensor) -> torch.Tensor:
        """Image tokens and queries are never padded: an all-ones mask, as LAVIS passes."""
        return torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)

    def autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])
