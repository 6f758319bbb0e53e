"""``blip-tiny``: every BLIP head at toy size, so the whole suite runs on a CPU in minutes.

Same modules and code paths as BLIP-base, only narrower and shallower (width 128, 2 layers, 2
heads of 64, patches of 16 at 64 px) with a closed toy vocabulary. Trained weights, when shipped,
live in ``weights/blip-tiny/<head>/`` as Hugging Face directories and are used by default;
otherwise each head is initialised from the run's seed (no download ever).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness_plugins.blip.catalog import TINY_IMAGE_SIZE
from harness_plugins.blip.loading.checkpoint import (
    BLIP_TEXT_LAYER_NORM_EPS,
    BLIP_VISION_LAYER_NORM_EPS,
    build_module,
)
from harness_plugins.blip.loading.loader import LoadedBlip, load_blip
from harness_plugins.blip.loading.tokenizer import tiny_tokenizer
from harness_plugins.common.weights import DIRECTORY, WeightsSource

TINY_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "blip-tiny"
WIDTH = 128
LAYERS = 2
HEADS = 2
FEED_FORWARD = 256
ITC_DIM = 64
PATCH = 16
NLVR2_MERGE_LAYER = 1
"""With 2 text layers, layer 0 averages the two images' branches and layer 1 merges them, so the
tiny model exercises both paths of BLIP's twin cross-attention."""


def tiny_configs(tokenizer: Any, image_size: int = TINY_IMAGE_SIZE) -> tuple[Any, Any]:
    """(BlipVisionConfig, BlipTextConfig) of the tiny model. ``initializer_range`` 0.02 for the ViT:
    transformers' 1e-10 default would make every image embedding the same."""
    from transformers import BlipTextConfig, BlipVisionConfig

    vision = BlipVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=FEED_FORWARD,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=image_size,
        patch_size=PATCH,
        layer_norm_eps=BLIP_VISION_LAYER_NORM_EPS,
        initializer_range=0.02,
    )
    text = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=WIDTH,
        encoder_hidden_size=WIDTH,
        intermediate_size=FEED_FORWARD,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=512,
        layer_norm_eps=BLIP_TEXT_LAYER_NORM_EPS,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return vision, text


def random_tiny(head: str, image_size: int = TINY_IMAGE_SIZE, seed: int = 0) -> LoadedBlip:
    """A tiny ``head`` initialised from ``seed`` alone: the same seed gives the same weights."""
    tokenizer = tiny_tokenizer()
    vision, text = tiny_configs(tokenizer, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_module(head, vision, text, image_text_hidden_size=ITC_DIM, merge_layer=NLVR2_MERGE_LAYER)
    return LoadedBlip(module.eval(), tokenizer, f"blip-tiny-seed{seed}", [])


def load_tiny(head: str, image_size: int = TINY_IMAGE_SIZE, seed: int = 0) -> LoadedBlip:
    """Shipped tiny weights for ``head`` when present, else ``random_tiny``."""
    shipped = TINY_WEIGHTS_DIR / head
    if (shipped / "config.json").is_file():
        # Named by head, not by path, so records made in different checkouts compare in `regress`.
        return load_blip(WeightsSource(DIRECTORY, f"blip-tiny/{head}", shipped), head, image_size)
    return random_tiny(head, image_size, seed)

