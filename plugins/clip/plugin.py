"""The CLIP plugin's registration: two model specs, no heavy imports.

Registered through the ``harness`` entry point exactly as a third-party plugin would be. The
factories live in ``harness_plugins.clip.model`` and are imported only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.hookspecs import hookimpl
from harness.specs import ModelSpec

if TYPE_CHECKING:
    from harness.registry import Registry

CAPABILITIES = ("ImagePreprocessor", "ImageEncoder", "VideoEncoder", "ImageTextEmbedder")
"""Contrastive embeddings only: CLIP has no matching head, decoder or pair classifier."""

MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="clip",
        factory="harness_plugins.clip.model:build_clip",
        description="OpenAI CLIP ViT-B/16 (transformers CLIPModel), contrastive retrieval baseline at 224 px",
        capabilities=CAPABILITIES,
        default_weights={"*": "openai/clip-vit-base-patch16"},
        missing_weights="harness_plugins.clip.model:missing_clip_weights",
        # CLIP was trained at 224 px with a 77-token context; BLIP's 384 px / 35 tokens are BLIP's.
        protocol_overrides={"image_size": 224, "max_text_tokens": 77},
    ),
    ModelSpec(
        name="clip-tiny",
        factory="harness_plugins.clip.model:build_clip_tiny",
        description="Tiny randomly initialised CLIP (fixed seed) for tests; built offline",
        capabilities=CAPABILITIES,
        default_weights={"*": "random init, seed 0"},
        protocol_overrides={"image_size": 64},
    ),
)


@hookimpl
def harness_register_models(registry: Registry) -> None:
    for spec in MODEL_SPECS:
        registry.add_model(spec)
