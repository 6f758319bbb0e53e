"""The ViT with fused attention (``fast_vit.py``) against transformers' eager ``BlipAttention``."""

from __future__ import annotations

import copy

import torch
from transformers import BlipVisionConfig, BlipVisionModel
from transformers.models.blip.modeling_blip import BlipAttention

from harness_plugins.blip.fast.vit import FusedBlipAttention, fuse_vision_attention


def test_fused_attention_matches_eager() -> None:
    config = BlipVisionConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                              image_size=64, patch_size=16, initializer_range=0.2, layer_norm_eps=1e-6)
    torch.manual_seed(0)
    eager = BlipVisionModel(config).eval()
    fused = copy.deepcopy(eager)
    assert fuse_vision_attention(fused) == 3
    assert all(type(m) is FusedBlipAttention for m in fused.modules() if isinstance(m, BlipAttention))
    assert fused.state_dict().keys() == eager.state_dict().keys()
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = eager(pixel_values=pixels).last_hidden_state
        got = fused(pixel_values=pixels).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert expected.std(dim=0).mean() > 1e-3, "images must give different tokens for the comparison to mean anything"
