"""``capfilt.json``'s statistics, computed from the written shards (never from memory), so a
resumed or multi-process run reports exactly what a single uninterrupted one does.

Per source (``web``, ``synthetic``, and each synthetic ``captioner/round``): texts, kept, kept
fraction, and the filter-score distribution (quantiles and a histogram). The noise ratio is the
fraction of synthetic captions the filter removes (the paper: 19 % with beam search, 25 % with
nucleus sampling). Diversity (Distinct-1/2, vocabulary, mBLEU-4) is over the synthetic captions,
each image's captions forming one mBLEU-4 group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.diversity import distinct_n, mbleu4, vocabulary_size

QUANTILES = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)
HISTOGRAM_BINS = 20
SCORE_RANGES = {"itm": (0.0, 1.0), "cosine": (-1.0, 1.0)}
"""Histogram range of each filter score: probabilities in [0, 1], cosines in [-1, 1]."""
WEB, SYNTHETIC = "web", "synthetic"
MAX_BAD_EXAMPLES = 100
"""Bad samples listed by key and reason in capfilt.json (all are counted; each manifest lists its own)."""


def source_names(text: Mapping[str, Any]) -> list[str]:
    """The sources a scored text counts under: ``web``, or ``synthetic`` and its captioner/round."""
    if text["source"] == WEB:
        return [WEB]
    return [SYNTHETIC, f"{SYNTHETIC}/{text['captioner']}/round{text['round']}"]


def score_distribution(scores: Sequence[float], score_kind: str) -> dict[str, Any]:
    """Mean, quantiles and a fixed-range histogram of filter scores."""
    low, high = SCORE_RANGES[score_kind]
    counts, edges = np.histogram(np.clip(scores, low, high), bins=HISTOGRAM_BINS, range=(low, high))
    values = np.asarray(scores, dtype=np.float64)
    return {
        "mean": round(float(values.mean()), 6) if len(values) else None,
        "quantiles": {f"{q:g}": round(float(np.quantile(values, q)), 6) for q in QUANTILES} if len(values) else {},
        "histogram": {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]},
    }


def _diversity(groups: Sequence[Sequence[str]]) -> dict[str, Any]:
    captions = [caption for group in groups for caption in group]
    if not captions:
        return {"captions": 0}
    return {
        "captions": len(captions),
        "distinct_1": round(distinct_n(captions, 1), 6),
        "distinct_2": round(distinct_n(captions, 2), 6),
        "vocabulary": vocabulary_size(captions),
        "mbleu4": round(mbleu4(groups), 6) if any(len(g) > 1 for g in groups) else None,
    }


def capfilt_statistics(samples: Iterable[Mapping[str, Any]], manifests: Sequence[Mapping[str, Any]],
                       score_kind: str) -> dict[str, Any]:
    """Counts, kept fractions, score distributions, noise ratio and diversity of a finished run.

    ``samples`` are the output samples' JSON (``scored`` texts with ``source``, ``score``,
    ``kept``); ``manifests`` the shards' manifests (input and bad-sample counts).
    """
    scores: dict[str, list[float]] = defaultdict(list)
    kept: dict[str, int] = defaultdict(int)
    groups: list[list[str]] = []
    images = images_with_kept = 0
    for sample in samples:
        images += 1
        images_with_kept += bool(sample["texts"])
        groups.append([t["text"] for t in sample["scored"] if t["source"] == SYNTHETIC])
        for text in sample["scored"]:
            for source in source_names(text):
                scores[source].append(text["score"])
                kept[source] += bool(text["kept"])
    sources = {
        source: {
            "texts": len(values),
            "kept": kept[source],
            "kept_fraction": round(kept[source] / len(values), 6) if values else None,
            "scores": score_distribution(values, score_kind),
        }
        for source, values in sorted(scores.items())
    }
    synthetic = sources.get(SYNTHETIC)
    return {
        "samples": {
            "input": sum(m["input_samples"] for m in manifests),
            "images": images,
            "bad": sum(len(m["bad_samples"]) for m in manifests),
            "images_with_kept_text": images_with_kept,
        },
        "shards": len(manifests),
        "sources": sources,
        "texts": {
            "scored": sum(s["texts"] for name, s in sources.items() if name in (WEB, SYNTHETIC)),
            "kept": sum(s["kept"] for name, s in sources.items() if name in (WEB, SYNTHETIC)),
        },
        "noise_ratio": round(1 - synthetic["kept_fraction"], 6) if synthetic and synthetic["texts"] else None,
        "web_noise_ratio": round(1 - sources[WEB]["kept_fraction"], 6) if WEB in sources else None,
        "diversity": _diversity(groups),
        "bad_examples": [bad for m in manifests for bad in m["bad_samples"]][:MAX_BAD_EXAMPLES],
    }
