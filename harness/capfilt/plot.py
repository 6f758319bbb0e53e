"""The score histograms of a CapFilt run: one panel per source, the threshold drawn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.capfilt.stats import SYNTHETIC, WEB


def plot_score_histograms(stats: Mapping[str, Any], threshold: float | None, score_label: str, path: Path) -> Path:
    """Write a PNG of the web and synthetic score histograms; ``threshold`` None (``top:F``, a
    cut per shard) draws no line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [s for s in (WEB, SYNTHETIC) if s in stats["sources"]]
    fig, axes = plt.subplots(1, max(1, len(sources)), figsize=(5 * max(1, len(sources)), 3.6), squeeze=False)
    for axis, source in zip(axes[0], sources, strict=False):
        entry = stats["sources"][source]
        edges = entry["scores"]["histogram"]["edges"]
        counts = entry["scores"]["histogram"]["counts"]
        widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
        axis.bar(edges[:-1], counts, width=widths, align="edge", color="#4C72B0" if source == WEB else "#DD8452",
                 edgecolor="white")
        if threshold is not None:
            axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
            axis.legend(loc="upper left")
        axis.set_title(f"{source}: {entry['kept']}/{entry['texts']} kept ({100 * (entry['kept_fraction'] or 0):.0f} %)")
        axis.set_xlabel(score_label)
        axis.set_ylabel("texts")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
