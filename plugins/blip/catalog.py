"""Which BLIP weights and which head each task uses; plain data, so listing models imports no torch.

BLIP released one fine-tuned checkpoint per task family, so a preset is a table from task to
weights. A task's *head* (architecture) decides which transformers class the weights load into
and which capabilities the built model offers.
"""

from __future__ import annotations

from collections.abc import Mapping

RETRIEVAL = "retrieval"
CAPTION = "caption"
VQA = "vqa"
NLVR2 = "nlvr2"
HEADS: tuple[str, ...] = (RETRIEVAL, CAPTION, VQA, NLVR2)

TASK_HEADS: Mapping[str, str] = {
    "coco_retrieval": RETRIEVAL,
    "flickr30k_retrieval": RETRIEVAL,
    "flickr30k_retrieval_zeroshot": RETRIEVAL,
    "msrvtt_retrieval": RETRIEVAL,
    # No BLIP VisDial checkpoint was released: the COCO ITM head scores candidates zero-shot.
    "visdial": RETRIEVAL,
    "coco_captioning": CAPTION,
    "nocaps": CAPTION,
    "vqav2": VQA,
    "msrvtt_qa": VQA,
    "msvd_qa": VQA,
    "nlvr2": NLVR2,
}

HEAD_CAPABILITIES: Mapping[str, tuple[str, ...]] = {
    RETRIEVAL: (
        "ImagePreprocessor", "ImageEncoder", "VideoEncoder", "ImageTextEmbedder", "ImageTextMatcher",
        "ImageTextMatchProbability", "DialogAnswerRanker",
    ),
    CAPTION: ("ImagePreprocessor", "ImageEncoder", "VideoEncoder", "Captioner"),
    VQA: ("ImagePreprocessor", "ImageEncoder", "VideoEncoder", "VisualQuestionAnswerer"),
    NLVR2: ("ImagePreprocessor", "ImageEncoder", "PairVerifier"),
}
ALL_CAPABILITIES: tuple[str, ...] = tuple(dict.fromkeys(c for caps in HEAD_CAPABILITIES.values() for c in caps))

OFFICIAL_NLVR2_BASE = "model_base_nlvr.pth"
OFFICIAL_DOWNLOADS = "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models"
"""Where BLIP's README links its released ``.pth`` files (``model_base_nlvr.pth``, ...)."""

_COCO_BASE = "Salesforce/blip-itm-base-coco"
_COCO_LARGE = "Salesforce/blip-itm-large-coco"

BASE_WEIGHTS: Mapping[str, str] = {
    "coco_retrieval": _COCO_BASE,
    "flickr30k_retrieval": "Salesforce/blip-itm-base-flickr",
    "flickr30k_retrieval_zeroshot": _COCO_BASE,
    "msrvtt_retrieval": _COCO_BASE,
    "visdial": _COCO_BASE,
    "coco_captioning": "Salesforce/blip-image-captioning-base",
    "nocaps": "Salesforce/blip-image-captioning-base",
    "vqav2": "Salesforce/blip-vqa-base",
    "msrvtt_qa": "Salesforce/blip-vqa-base",
    "msvd_qa": "Salesforce/blip-vqa-base",
    "nlvr2": OFFICIAL_NLVR2_BASE,
}

# BLIP released no ViT-L VQA or NLVR2 model: "capfilt-large" is the ViT-B VQA model fine-tuned
# from CapFilt-L pre-training, and NLVR2 has only the base checkpoint.
LARGE_WEIGHTS: Mapping[str, str] = {
    "coco_retrieval": _COCO_LARGE,
    "flickr30k_retrieval": "Salesforce/blip-itm-large-flickr",
    "flickr30k_retrieval_zeroshot": _COCO_LARGE,
    "msrvtt_retrieval": _COCO_LARGE,
    "visdial": _COCO_LARGE,
    "coco_captioning": "Salesforce/blip-image-captioning-large",
    "nocaps": "Salesforce/blip-image-captioning-large",
    "vqav2": "Salesforce/blip-vqa-capfilt-large",
    "msrvtt_qa": "Salesforce/blip-vqa-capfilt-large",
    "msvd_qa": "Salesforce/blip-vqa-capfilt-large",
}

TINY_IMAGE_SIZE = 64
TINY_WEIGHTS_NOTE = "plugins/blip/weights/blip-tiny/<head>/ if shipped, else seeded random init"
