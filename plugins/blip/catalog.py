"""Which BLIP weights and which head each task uses; plain data, so listing models imports no torch.

BLIP released one fine-tuned checkpoint per task family, so a preset is a table from task to
weights. A task's *head* (architecture) decides which transformers class the weights load into
and which capabilities the built model offers.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.specs import Caveat, PublishedRow

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
    # CapFilt's filter is the ITM head; BLIP fine-tuned it on COCO before filtering.
    "capfilt_filter": RETRIEVAL,
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
    "capfilt_filter": _COCO_BASE,
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
    "capfilt_filter": _COCO_LARGE,
    "coco_captioning": "Salesforce/blip-image-captioning-large",
    "nocaps": "Salesforce/blip-image-captioning-large",
    "vqav2": "Salesforce/blip-vqa-capfilt-large",
    "msrvtt_qa": "Salesforce/blip-vqa-capfilt-large",
    "msvd_qa": "Salesforce/blip-vqa-capfilt-large",
}

# Which row of the BLIP paper's tables (results/baselines/blip_paper.json) each preset's default
# weights reproduce: BLIP released its ViT-B COCO captioning model only with CapFilt-L
# pre-training, and its ViT-B retrieval, VQA and NLVR2 models with plain 129M pre-training
# (README "Finetuned checkpoints"). The zero-shot video rows were made with the COCO retrieval
# and VQA models. VisDial has no row: the paper fine-tuned on VisDial, the preset runs zero-shot.
_PAPER = "blip_paper"
_BASE_129M = PublishedRow(_PAPER, "BLIP (129M)")
_CAPFILT_L = PublishedRow(_PAPER, "BLIP CapFilt-L (129M)")
_VIT_L = PublishedRow(_PAPER, "BLIP ViT-L (129M)")
_ZERO_SHOT_VIDEO = PublishedRow(_PAPER, "BLIP (129M, zero-shot)")

BASE_PUBLISHED_ROWS: Mapping[str, PublishedRow] = {
    "coco_retrieval": _BASE_129M,
    "flickr30k_retrieval": _BASE_129M,
    "flickr30k_retrieval_zeroshot": _BASE_129M,
    "msrvtt_retrieval": _ZERO_SHOT_VIDEO,
    "coco_captioning": _CAPFILT_L,
    "nocaps": _CAPFILT_L,
    "vqav2": _BASE_129M,
    "msrvtt_qa": _ZERO_SHOT_VIDEO,
    "msvd_qa": _ZERO_SHOT_VIDEO,
    "nlvr2": _BASE_129M,
}

LARGE_PUBLISHED_ROWS: Mapping[str, PublishedRow] = {
    "coco_retrieval": _VIT_L,
    "flickr30k_retrieval": _VIT_L,
    "flickr30k_retrieval_zeroshot": _VIT_L,
    "coco_captioning": _VIT_L,
    "nocaps": _VIT_L,
    "vqav2": _CAPFILT_L,
}

VQA_TRAINED_ON_VAL = Caveat(
    "BLIP's VQA checkpoints were fine-tuned on VQA v2 train and val plus Visual Genome QA "
    "(configs/vqa.yaml): val is not held out, so this accuracy is not a test number; for numbers "
    "comparable with the paper, run --split test and submit the submission file to the EvalAI "
    "test-dev server (docs/datasets.md)",
    tasks=("vqav2",), splits=("val",),
)
VISDIAL_ZERO_SHOT = Caveat(
    "zero-shot: BLIP released no VisDial checkpoint, so the COCO retrieval model's ITM head ranks "
    "the answers; the paper's BLIP row was fine-tuned on VisDial",
    tasks=("visdial",),
)
BASE_CAVEATS: tuple[Caveat, ...] = (VQA_TRAINED_ON_VAL, VISDIAL_ZERO_SHOT)
LARGE_CAVEATS: tuple[Caveat, ...] = (
    VQA_TRAINED_ON_VAL,
    VISDIAL_ZERO_SHOT,
    Caveat(
        "BLIP released no ViT-L VQA model: blip-large answers with the ViT-B CapFilt-L VQA checkpoint",
        tasks=("vqav2", "msrvtt_qa", "msvd_qa"),
    ),
)

TINY_IMAGE_SIZE = 64
TINY_WEIGHTS_NOTE = "plugins/blip/weights/blip-tiny/<head>/ if shipped, else seeded random init"
