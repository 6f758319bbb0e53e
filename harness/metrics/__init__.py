"""Pure metric functions of the harness, independent of models, tasks and files.

Percentages are in percent (0-100), as the BLIP paper reports them; ranks are 1-based.
"""

from harness.metrics.captioning import (
    NOCAPS_DOMAINS,
    caption_scores,
    cider_per_example,
    nocaps_scores,
    spice_models_present,
)
from harness.metrics.classification import accuracy, consistency
from harness.metrics.dialog import mrr, ndcg, ranks_from_scores, visdial_metrics
from harness.metrics.diversity import distinct_n, mbleu4, vocabulary_size
from harness.metrics.retrieval import (
    image_text_retrieval_metrics,
    mean_rank,
    median_rank,
    ranks_of_targets,
    recall_at_k,
    video_text_retrieval_metrics,
)
from harness.metrics.vqa import normalize_answer, per_sample_vqa_accuracy, vqa_accuracy, vqa_accuracy_score

__all__ = [
    "NOCAPS_DOMAINS",
    "accuracy",
    "distinct_n",
    "caption_scores",
    "cider_per_example",
    "consistency",
    "image_text_retrieval_metrics",
    "mbleu4",
    "mean_rank",
    "median_rank",
    "mrr",
    "ndcg",
    "nocaps_scores",
    "normalize_answer",
    "per_sample_vqa_accuracy",
    "ranks_from_scores",
    "ranks_of_targets",
    "recall_at_k",
    "spice_models_present",
    "video_text_retrieval_metrics",
    "vocabulary_size",
    "visdial_metrics",
    "vqa_accuracy",
    "vqa_accuracy_score",
]
