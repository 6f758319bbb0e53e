"""What every BLIP head shares: preprocessing, the ViT pass, video pooling, tokenisation with
``[ENC]``, device and precision.

Each head (``retrieval.py``, ``captioning.py``, ``vqa.py``, ``verification.py``) subclasses
``BlipModel`` and adds only its capability methods, so a model object offers exactly the
capabilities its weights support and the registry's ``isinstance`` checks mean something.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from harness.capabilities import VisualFeatures
from harness.errors import ConfigError
from harness.specs import ModelRequest
from harness_plugins.blip.fast.masking import honour_cross_attention_masks
from harness_plugins.blip.fast.vit import fuse_vision_attention
from harness_plugins.blip.loading.loader import LoadedBlip
from harness_plugins.blip.loading.tokenizer import enc_token_id
from harness_plugins.common.bound_model import BoundModel

DEFAULT_MAX_TEXT_TOKENS = 35
"""BLIP's text length for retrieval, VQA questions and NLVR2 statements."""


class BlipModel(BoundModel):
    """A loaded BLIP head bound to a device and precision.

    Inputs may live anywhere; every method moves them to the model's device. Visual features stay
    on the device (the runner may cache them); embeddings are float32 so tasks can compare them
    whatever the precision. With ``fp32`` nothing is autocast, so results are faithful to the
    checkpoint; ``bf16``/``fp16`` autocast the forward passes.
    """

    head = ""

    def __init__(self, loaded: LoadedBlip, request: ModelRequest, image_size: int) -> None:
        super().__init__(loaded, request, image_size)
        honour_cross_attention_masks(self.module)
        fuse_vision_attention(self.module)
        self.max_text_tokens = int(self.protocol.get("max_text_tokens", DEFAULT_MAX_TEXT_TOKENS))
        positions = self.module.config.text_config.max_position_embeddings
        if self.max_text_tokens > positions:
            # Longer texts would index past the position embeddings mid-run.
            raise ConfigError(f"protocol max_text_tokens={self.max_text_tokens}: these weights have "
                              f"{positions} text positions; use --set max_text_tokens={positions} or less")
        self.enc_token_id = enc_token_id(self.tokenizer)

    # ImageEncoder
    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        """One ViT pass; ``tokens`` (B, L, H) feed every cross-attention head, ``embeds`` are the
        ITC embeddings when this head has them."""
        with self.autocast():
            tokens = self.module.vision_model(pixel_values=pixels.to(self.device)).last_hidden_state
            embeds = self.image_embeds(tokens)
        return VisualFeatures(embeds=embeds, tokens=tokens)

    # VideoEncoder
    @torch.inference_mode()
    def encode_videos(self, frames: torch.Tensor) -> VisualFeatures:
        """(B, F, 3, S, S) -> the B*F frames through the ViT as images; ITC embedding = the mean
        over frames of the projected (not yet normalised) CLS, then normalised, as BLIP's
        ``eval_retrieval_video.py``; tokens of all frames concatenated (B, F*L, H)."""
        batch, num_frames = frames.shape[:2]
        per_frame = self.encode_images(frames.flatten(0, 1))
        tokens = per_frame.tokens.reshape(batch, num_frames * per_frame.tokens.shape[1], per_frame.tokens.shape[2])
        with self.autocast():
            projected = self.image_embeds(per_frame.tokens, normalize=False)
        embeds = None
        if projected is not None:
            embeds = F.normalize(projected.reshape(batch, num_frames, -1).mean(dim=1), dim=-1)
        return VisualFeatures(embeds=embeds, tokens=tokens)

    def image_embeds(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor | None:
        """ITC embeddings from ViT tokens (L2-normalised unless ``normalize`` is False: video
        pooling averages the raw projections); None for heads without an ITC projection."""
        return None

    def tokenize(
        self, texts: Sequence[str], max_length: int, enc_first: bool = False, truncation_side: str = "right"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask) on the device, padded to the longest text; with ``enc_first`` the first
        token is ``[ENC]`` instead of ``[CLS]``, as BLIP marks text that attends to an image."""
        previous = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = truncation_side
        try:
            encoded = self.tokenizer(
                list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
            )
        finally:
            self.tokenizer.truncation_side = previous
        input_ids = encoded["input_ids"].to(self.device)
        if enc_first:
            input_ids[:, 0] = self.enc_token_id
        return input_ids, encoded["attention_mask"].to(self.device)

    def image_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image tokens are never padded: an all-ones mask, as BLIP passes."""
        return torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)

    def on_device(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.to(self.device, non_blocking=True)
