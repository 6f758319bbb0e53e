"""How big each toy split is. Test splits stay small (fast evaluation in CI); train splits are
large enough for a tiny model to learn the tasks. The whole suite must build in seconds."""

from __future__ import annotations

CAPTIONS_PER_IMAGE = 5
COCO_IMAGES: dict[str, int] = {"train": 600, "val": 30, "test": 30}
COCO_RESTVAL_FRACTION = 0.2
"""Share of Karpathy train images that live in val2014/ (COCO's "restval"), as in the real split."""
FLICKR_IMAGES: dict[str, int] = {"train": 300, "val": 30, "test": 30}

NOCAPS_IMAGES_PER_DOMAIN = 10
NOCAPS_CAPTIONS_PER_IMAGE = 10

VQA_IMAGES: dict[str, int] = {"train": 500, "val": 50, "test": 10}
VQA_QUESTIONS_PER_IMAGE = 3
VQA_ANSWERS_PER_QUESTION = 10

NLVR2_PAIRS: dict[str, int] = {"train": 3000, "dev": 200, "test1": 200}
"""NLVR2 needs more pairs than the other tasks: with 600 the twin model memorised them; the
evaluation splits are large enough that one pair moves accuracy by 0.5 points, not 1.7."""

VISDIAL_DIALOGS: dict[str, int] = {"train": 100, "val": 20}
VISDIAL_ROUNDS = 10
VISDIAL_OPTIONS = 100

VIDEO_FRAMES = 24
VIDEO_FPS = 8
MSRVTT_VIDEOS: dict[str, int] = {"train": 60, "test": 20}
MSRVTT_TRAIN_CAPTIONS_PER_VIDEO = 3
MSVD_VIDEOS: dict[str, int] = {"train": 60, "test": 20}
VIDEO_QA_PER_VIDEO: dict[str, int] = {"train": 5, "test": 3}

WEB_IMAGES = 60
WEB_SHARD_SIZE = 30
"""Images per webdataset shard of the toy web split (two shards, so resuming per shard is testable)."""
WEB_NOISE: dict[str, float] = {"clean": 0.4, "wrong": 0.2, "partial": 0.2, "boilerplate": 0.2}
"""Share of the toy web images whose text is their own caption, another image's, their caption
with one detail changed, or boilerplate."""
