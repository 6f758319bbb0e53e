"""What both BLIP-2 heads share: preprocessing, the ViT pass, the Q-Former's query pass, device
and precision.

Each head (``retrieval.py``, ``generation.py``) subclasses ``Blip2Model`` and adds only its
capability methods, so a model object offers exactly the capabilities its weights support.
"""

from __future__ import annotations

import torch

from harness_plugins.common.bound_model import BoundModel


class Blip2Model(BoundModel):
    """A loaded BLIP-2 head bound to a device and precision.

    BLIP-2 evaluates with BLIP's image transform (LAVIS's ``blip_image_eval``: bicubic resize to
    S x S, CLIP's mean and std). When the protocol's resolution differs from the checkpoint's, the
    ViT's position embeddings are interpolated on the fly. ``fp32`` runs unchanged; ``bf16``/
    ``fp16`` autocast the forward passes (transformers keeps the Q-Former in fp32 regardless).
    """

    head = ""

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

