"""The BLIP-2 plugin's registration: two presets. Importing it imports neither torch nor
transformers: factories are named as strings."""

from __future__ import annotations

from harness import hookimpl
from harness.specs import ModelSpec
from harness_plugins.blip2.catalog import (
    ALL_CAPABILITIES,
    PRETRAINED_FLAN_T5,
    PRETRAINED_RETRIEVAL,
    PUBLISHED_ROWS,
    TASK_PROTOCOLS,
    WEIGHTS,
    tiny_task_protocols,
)

MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="blip2",
        factory="harness_plugins.blip2.presets:build_blip2",
        description=(
            "BLIP-2 ViT-g (Li et al. 2023) with LAVIS's evaluation protocol: COCO-fine-tuned Q-Former for "
            f"retrieval (also zero-shot Flickr30k; {PRETRAINED_RETRIEVAL} with --weights), COCO-fine-tuned "
            f"OPT-2.7b captioner, zero-shot VQA with pre-trained OPT-2.7b ({PRETRAINED_FLAN_T5} with --weights)"
        ),
        capabilities=ALL_CAPABILITIES,
        default_weights=WEIGHTS,
        task_protocol_overrides=TASK_PROTOCOLS,
        missing_weights="harness_plugins.blip2.presets:missing_blip2_weights",
        baseline_rows=PUBLISHED_ROWS,
    ),
    ModelSpec(
        name="blip2-tiny",
        factory="harness_plugins.blip2.presets:build_blip2_tiny",
        description=(
            "BLIP-2 at toy size (width 32, 2 layers, 4 queries, OPT-style LM, 32 px), seeded random init, for "
            "tests; no download"
        ),
        capabilities=ALL_CAPABILITIES,
        default_weights={"*": "seeded random init"},
        task_protocol_overrides=tiny_task_protocols(),
    ),
)


@hookimpl
def harness_register_models(registry) -> None:
    for spec in MODEL_SPECS:
        registry.add_model(spec)
