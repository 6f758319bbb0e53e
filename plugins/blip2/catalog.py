"""Which BLIP-2 checkpoint, head and protocol each task uses; plain data, so listing models imports
no torch.

Every constant comes from LAVIS's BLIP-2 evaluation configs (``lavis/projects/blip2/eval/``) and
the model configs they name: retrieval with the COCO-fine-tuned Q-Former at 364 px and k_test 128
(COCO and zero-shot Flickr30k alike), captioning with the COCO-fine-tuned OPT-2.7b model at 364 px
(prompt "a photo of", 5 beams, 8 to 30 tokens counting the prompt), zero-shot VQA v2 with the
pre-trained OPT-2.7b model at 224 px ("Question: {} Short answer:", 5 beams, at most 10 answer
tokens, beams ranked by their summed log-probability).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.specs import PublishedRow

RETRIEVAL = "retrieval"
GENERATION = "generation"
HEADS: tuple[str, ...] = (RETRIEVAL, GENERATION)

HF_CLASSES: Mapping[str, str] = {
    RETRIEVAL: "Blip2ForImageTextRetrieval",
    GENERATION: "Blip2ForConditionalGeneration",
}
"""The transformers class each head loads into."""

TASK_HEADS: Mapping[str, str] = {
    "coco_retrieval": RETRIEVAL,
    "flickr30k_retrieval": RETRIEVAL,
    "flickr30k_retrieval_zeroshot": RETRIEVAL,
    "coco_captioning": GENERATION,
    "nocaps": GENERATION,
    "vqav2": GENERATION,
}

HEAD_CAPABILITIES: Mapping[str, tuple[str, ...]] = {
    RETRIEVAL: ("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder", "ImageTextMatcher"),
    GENERATION: ("ImagePreprocessor", "ImageEncoder", "Captioner", "VisualQuestionAnswerer"),
}
ALL_CAPABILITIES: tuple[str, ...] = tuple(dict.fromkeys(c for caps in HEAD_CAPABILITIES.values() for c in caps))

COCO_RETRIEVAL = "Salesforce/blip2-itm-vit-g-coco"
PRETRAINED_RETRIEVAL = "Salesforce/blip2-itm-vit-g"
"""The pre-trained (not COCO-fine-tuned) Q-Former; selectable with ``--weights``."""
COCO_CAPTION = "Salesforce/blip2-opt-2.7b-coco"
PRETRAINED_OPT = "Salesforce/blip2-opt-2.7b"
PRETRAINED_FLAN_T5 = "Salesforce/blip2-flan-t5-xl"
"""The Flan-T5-XL model of the paper's zero-shot VQA table; selectable with ``--weights`` (LAVIS
ranks its beams with length penalty -1: pass ``--set length_penalty=-1``)."""

WEIGHTS: Mapping[str, str] = {
    "coco_retrieval": COCO_RETRIEVAL,
    # The BLIP-2 paper reports Flickr30k zero-shot only, with the COCO-fine-tuned model.
    "flickr30k_retrieval_zeroshot": COCO_RETRIEVAL,
    "coco_captioning": COCO_CAPTION,
    "nocaps": COCO_CAPTION,
    "vqav2": PRETRAINED_OPT,
}

_PAPER = "blip2_paper"
PUBLISHED_ROWS: Mapping[str, PublishedRow] = {
    "coco_retrieval": PublishedRow(_PAPER, "BLIP-2 ViT-g"),
    "flickr30k_retrieval_zeroshot": PublishedRow(_PAPER, "BLIP-2 ViT-g"),
    "coco_captioning": PublishedRow(_PAPER, "BLIP-2 ViT-g OPT-2.7B"),
}
"""The published row each default checkpoint reproduces (``harness compare`` takes deltas
against it). NoCaps and zero-shot VQA have only the paper's best-model figures, not this
checkpoint's, so they have none."""

_RETRIEVAL_PROTOCOL: Mapping[str, Any] = {"image_size": 364, "k_test": 128, "max_words": 50, "max_text_tokens": 35}
_CAPTION_PROTOCOL: Mapping[str, Any] = {
    "image_size": 364,
    "prompt": "a photo of",
    "num_beams": 5,
    "max_length": 30,
    "min_length": 8,
    "repetition_penalty": 1.0,
}
_VQA_PROTOCOL: Mapping[str, Any] = {
    "image_size": 224,
    "mode": "generate",
    "prompt": "Question: {} Short answer:",
    "num_beams": 5,
    "max_length": 10,
    "min_length": 1,
    "length_penalty": 0.0,
}

TASK_PROTOCOLS: Mapping[str, Mapping[str, Any]] = {
    "coco_retrieval": _RETRIEVAL_PROTOCOL,
    "flickr30k_retrieval": _RETRIEVAL_PROTOCOL,
    "flickr30k_retrieval_zeroshot": _RETRIEVAL_PROTOCOL,
    "coco_captioning": _CAPTION_PROTOCOL,
    # LAVIS has no NoCaps config for the COCO-fine-tuned OPT model; the paper evaluates NoCaps
    # zero-shot with it, here with its COCO decoding settings (a recorded choice).
    "nocaps": _CAPTION_PROTOCOL,
    "vqav2": _VQA_PROTOCOL,
}
"""Per-task protocol changes of the ``blip2`` preset (``ModelSpec.task_protocol_overrides``)."""

TINY_IMAGE_SIZE = 32


def tiny_task_protocols() -> dict[str, dict[str, Any]]:
    """``blip2-tiny`` runs BLIP-2's protocol at the tiny model's resolution."""
    return {task: {**protocol, "image_size": TINY_IMAGE_SIZE} for task, protocol in TASK_PROTOCOLS.items()}
