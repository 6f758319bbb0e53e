"""Make transformers' BLIP text cross-attention honour its attention mask.

In transformers 5 ``BlipTextAttention.forward`` hands the cross-attention mask to
``BlipTextSelfAttention`` as ``attention_mask``, which that class replaces by its (absent)
``encoder_attention_mask`` whenever it attends to encoder states, so padded encoder positions are
attended. Image tokens are never padded, but BLIP's VQA rank mode masks the padding of the
question states its decoder reads; without the mask an answer's score would depend on how long the
other questions in its batch are. Swapping the class of the cross-attention modules (same
parameters, same state-dict keys) restores the mask and is a no-op once transformers passes it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention


class MaskedCrossAttention(BlipTextSelfAttention):
    """``BlipTextSelfAttention`` that applies the mask it is given when attending to encoder states."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if encoder_hidden_states is not None and encoder_attention_mask is None:
            encoder_attention_mask = attention_mask
        return super().forward(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            **kwargs,
        )


def honour_cross_attention_masks(module: nn.Module) -> int:
    """Re-class every text cross-attention of ``module`` (``*.crossattention.self``); returns how
    many. Parameters and state-dict keys are unchanged."""
    count = 0
    for name, child in module.named_modules():
        if name.endswith("crossattention.self") and type(child) is BlipTextSelfAttention:
            child.__class__ = MaskedCrossAttention
            count += 1
    return count
