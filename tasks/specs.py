"""Registration of the built-in tasks: names, required capabilities, the paper's protocols, splits.

This module imports nothing heavy so ``harness list`` stays fast; each factory names the module
that implements the task. A third-party task is one module like ``tasks/nlvr2.py`` plus one spec
registered the same way from its own entry point.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.protocol_rules import NON_NEGATIVE, POSITIVE, Choice, Either, Flag, Integer, Number, Text
from harness.specs import Caveat, TaskSpec

_RETRIEVAL_CAPS = ("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder")
_VIDEO_QA_CAPS = ("ImagePreprocessor", "VideoEncoder", "VisualQuestionAnswerer")
_SCORED_WITH_JAVA = {
    "java": "pycocoevalcap's PTB tokenizer and METEOR run on Java; install a JRE, e.g. apt-get install default-jre-headless",
}

_RETRIEVAL = {
    "image_size": 384,
    "max_words": 30,
    "max_text_tokens": 35,
    "rerank": "auto",
}
_CAPTIONING = {
    "image_size": 384,
    "prompt": "a picture of ",
    "num_beams": 3,
    "max_length": 20,
    "min_length": 5,
    "repetition_penalty": 1.0,
    "sample": False,
    "top_p": 0.9,
    "spice": "auto",
    "length_normalization": "blip",
}
_VQA = {
    "image_size": 480,
    "mode": "rank",
    "k_test": 128,
    "rank_label_smoothing": 0.1,
    "num_beams": 3,
    "max_length": 10,
    "min_length": 1,
    "max_question_words": 50,
    "prompt": "",
    "length_penalty": 1.0,
    "length_normalization": "blip",
}
_VIDEO_QA = {**_VQA, "num_frames": 16, "frame_sampling": "uniform", "frame_resize": "decord"}

_NOCAPS_VAL = Caveat(
    "NoCaps val: the BLIP paper's Table 7 reports val too, but the NoCaps leaderboard reports the "
    "held-out test split, scored only by its evaluation server; val numbers are not test numbers",
    splits=("val",),
)
_VQA_TEST = Caveat(
    "test: the answers are not public; the accuracy comes from the EvalAI server scoring the "
    "submission file (test-dev or test-std)",
    splits=("test",),
)

# What each protocol value may be (harness.protocol_rules), checked before data or weights load.
_AUTO_TRUE_FALSE = Choice(("auto", True, False))
_FRAMES = {"num_frames": POSITIVE, "frame_sampling": Choice(("strided", "uniform")),
           "frame_resize": Choice(("decord", "pil"))}
"""``frame_sampling`` names ``harness.media.FRAME_SAMPLINGS`` and ``frame_resize``
``harness_tasks.video.FRAME_RESIZES`` (not imported: listing stays light)."""
_LENGTH_NORMALIZATION = Choice(("blip", "generated"))
"""``harness.capabilities.LENGTH_NORMALIZATIONS``."""
_RETRIEVAL_RULES = {
    "image_size": POSITIVE, "max_words": POSITIVE, "max_text_tokens": Integer(minimum=2),
    "rerank": _AUTO_TRUE_FALSE, "k_test": POSITIVE,
}
_CAPTIONING_RULES = {
    "image_size": POSITIVE, "prompt": Text(), "num_beams": POSITIVE, "max_length": POSITIVE,
    "min_length": Integer(minimum=0, at_most_key="max_length"), "repetition_penalty": Number(0, minimum_open=True),
    "sample": Flag(), "top_p": Number(0, 1, minimum_open=True), "spice": _AUTO_TRUE_FALSE,
    "length_normalization": _LENGTH_NORMALIZATION,
}
_VQA_RULES = {
    "image_size": POSITIVE, "mode": Choice(("rank", "generate")), "k_test": POSITIVE,
    "rank_label_smoothing": Number(0, 1, maximum_open=True), "num_beams": POSITIVE, "max_length": POSITIVE,
    "min_length": Integer(minimum=0, at_most_key="max_length"), "max_question_words": POSITIVE,
    "prompt": Text(), "length_penalty": Number(), "length_normalization": _LENGTH_NORMALIZATION,
}

TASK_SPECS: tuple[TaskSpec, ...] = (
    TaskSpec(
        name="coco_retrieval",
        factory="harness_tasks.retrieval:ImageTextRetrievalTask",
        description="COCO image-text retrieval (Karpathy 5k test): ITC shortlist, ITM re-rank of the top 256",
        capabilities=_RETRIEVAL_CAPS,
        protocol={**_RETRIEVAL, "k_test": 256},
        rules=_RETRIEVAL_RULES,
        splits=("karpathy_test_5k", "karpathy_val_5k"),
        default_split="karpathy_test_5k",
        data_dir="coco",
        headline_metrics=("txt_r1", "txt_r5", "img_r1", "img_r5"),
    ),
    TaskSpec(
        name="flickr30k_retrieval",
        factory="harness_tasks.retrieval:ImageTextRetrievalTask",
        description="Flickr30k image-text retrieval (1k test): ITC shortlist, ITM re-rank of the top 128",
        capabilities=_RETRIEVAL_CAPS,
        protocol={**_RETRIEVAL, "k_test": 128},
        rules=_RETRIEVAL_RULES,
        splits=("karpathy_test_1k", "karpathy_val_1k"),
        default_split="karpathy_test_1k",
        data_dir="flickr30k",
        headline_metrics=("txt_r1", "txt_r5", "img_r1", "img_r5"),
    ),
    TaskSpec(
        name="flickr30k_retrieval_zeroshot",
        factory="harness_tasks.retrieval:ImageTextRetrievalTask",
        description="Zero-shot Flickr30k retrieval with the COCO-finetuned model",
        capabilities=_RETRIEVAL_CAPS,
        protocol={**_RETRIEVAL, "k_test": 128},
        rules=_RETRIEVAL_RULES,
        splits=("karpathy_test_1k",),
        default_split="karpathy_test_1k",
        data_dir="flickr30k",
        headline_metrics=("txt_r1", "txt_r5", "img_r1", "img_r5"),
    ),
    TaskSpec(
        name="coco_captioning",
        factory="harness_tasks.captioning:CaptioningTask",
        description="COCO captioning (Karpathy test): BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE",
        capabilities=("ImagePreprocessor", "ImageEncoder", "Captioner"),
        protocol=_CAPTIONING,
        rules=_CAPTIONING_RULES,
        splits=("karpathy_test", "karpathy_val"),
        default_split="karpathy_test",
        data_dir="coco",
        headline_metrics=("bleu4", "cider", "spice"),
        programs=_SCORED_WITH_JAVA,
    ),
    TaskSpec(
        name="nocaps",
        factory="harness_tasks.captioning:CaptioningTask",
        description="NoCaps validation: in-, near-, out-of-domain and overall CIDEr/SPICE",
        capabilities=("ImagePreprocessor", "ImageEncoder", "Captioner"),
        protocol={**_CAPTIONING, "repetition_penalty": 1.1},
        rules=_CAPTIONING_RULES,
        splits=("val",),
        default_split="val",
        data_dir="nocaps",
        headline_metrics=("in_cider", "near_cider", "out_cider", "overall_cider", "overall_spice"),
        caveats=(_NOCAPS_VAL,),
        programs=_SCORED_WITH_JAVA,
    ),
    TaskSpec(
        name="vqav2",
        factory="harness_tasks.vqa:VQATask",
        description="VQA v2: answer ranking (default) or generation; official VQA accuracy; test-set submission file",
        capabilities=("ImagePreprocessor", "ImageEncoder", "VisualQuestionAnswerer"),
        protocol={**_VQA, "vqa_scorer": "official"},
        rules={**_VQA_RULES, "vqa_scorer": Choice(("official", "2016"))},
        splits=("val", "test"),
        default_split="val",
        data_dir="vqav2",
        headline_metrics=("accuracy",),
        caveats=(_VQA_TEST,),
    ),
    TaskSpec(
        name="nlvr2",
        factory="harness_tasks.nlvr2:NLVR2Task",
        description="NLVR2: does a statement hold for an image pair; accuracy on dev and test-P",
        capabilities=("ImagePreprocessor", "ImageEncoder", "PairVerifier"),
        protocol={"image_size": 384, "max_words": 40, "max_text_tokens": 128},
        rules={"image_size": POSITIVE, "max_words": POSITIVE, "max_text_tokens": Integer(minimum=2)},
        splits=("test_p", "dev"),
        default_split="test_p",
        data_dir="nlvr2",
        headline_metrics=("accuracy",),
    ),
    TaskSpec(
        name="visdial",
        factory="harness_tasks.visdial:VisDialTask",
        description="VisDial v1.0 val: rank 100 candidate answers; MRR, R@1/5/10, mean rank, NDCG",
        capabilities=("ImagePreprocessor", "ImageEncoder", "DialogAnswerRanker"),
        protocol={"image_size": 384, "max_text_tokens": 256, "history_rounds": 10},
        rules={"image_size": POSITIVE, "max_text_tokens": Integer(minimum=2), "history_rounds": NON_NEGATIVE},
        splits=("v1.0_val",),
        default_split="v1.0_val",
        data_dir="visdial",
        headline_metrics=("mrr", "r1", "r10", "ndcg"),
    ),
    TaskSpec(
        name="msrvtt_retrieval",
        factory="harness_tasks.video:VideoTextRetrievalTask",
        description="Zero-shot MSRVTT text-to-video retrieval (1k-A), 8 frames, ITM re-rank of the top 128",
        capabilities=("ImagePreprocessor", "VideoEncoder", "ImageTextEmbedder"),
        protocol={**_RETRIEVAL, "max_words": 40, "k_test": 128, "num_frames": 8, "frame_sampling": "strided",
                  "frame_resize": "decord"},
        rules={**_RETRIEVAL_RULES, **_FRAMES},
        splits=("test_1k_a",),
        default_split="test_1k_a",
        data_dir="msrvtt",
        headline_metrics=("t2v_r1", "t2v_r5", "t2v_r10", "t2v_median_rank"),
    ),
    TaskSpec(
        name="msrvtt_qa",
        factory="harness_tasks.video:VideoQATask",
        description="Zero-shot MSRVTT-QA with the VQA model, 16 frames; top-1 accuracy",
        capabilities=_VIDEO_QA_CAPS,
        protocol=_VIDEO_QA,
        rules={**_VQA_RULES, **_FRAMES},
        splits=("test",),
        default_split="test",
        data_dir="msrvtt",
        headline_metrics=("accuracy",),
    ),
    TaskSpec(
        name="capfilt_filter",
        factory="harness_tasks.capfilt_filter:CapFiltFilterTask",
        description="CapFilt filter quality: matching vs noisy pairs (web split or a retrieval split with a seeded noise plan); ROC-AUC, AP, P/R/F1",
        capabilities=_RETRIEVAL_CAPS,
        protocol={
            "image_size": 384,
            "max_words": 30,
            "max_text_tokens": 35,
            "score": "auto",
            "threshold": "auto",
            "plan_seed": 0,
            "wrong_fraction": 0.25,
            "partial_fraction": 0.25,
        },
        rules={
            "image_size": POSITIVE, "max_words": POSITIVE, "max_text_tokens": Integer(minimum=2),
            "score": Choice(("auto", "itm", "itc")), "threshold": Either((Choice(("auto",)), Number())),
            "plan_seed": Integer(0, 2**32 - 1), "wrong_fraction": Number(0, 1), "partial_fraction": Number(0, 1),
        },
        splits=("web", "coco_karpathy_test_5k", "coco_karpathy_val_5k", "flickr30k_karpathy_test_1k", "flickr30k_karpathy_val_1k"),
        default_split="web",
        # The web split lives in web/, the retrieval splits in coco/ and flickr30k/.
        data_dir=".",
        headline_metrics=("roc_auc", "average_precision", "f1"),
    ),
    TaskSpec(
        name="msvd_qa",
        factory="harness_tasks.video:VideoQATask",
        description="Zero-shot MSVD-QA with the VQA model, 16 frames; top-1 accuracy",
        capabilities=_VIDEO_QA_CAPS,
        protocol=_VIDEO_QA,
        rules={**_VQA_RULES, **_FRAMES},
        splits=("test",),
        default_split="test",
        data_dir="msvd",
        headline_metrics=("accuracy",),
    ),
)


@hookimpl
def harness_register_tasks(registry) -> None:
    for spec in TASK_SPECS:
        registry.add_task(spec)
