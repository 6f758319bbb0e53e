"""What a report shows of one evaluated sample: its pictures, its texts and how well the model did.

A metric says how often a model is wrong; a researcher also wants to see where. Each task turns
its own samples and predictions into ``Example`` objects (``Task.examples``), since only the task
knows what a sample holds (a question and ten human answers, an image pair, a dialog round);
``harness.report`` draws them without knowing any task. A task scores every sample (higher is
better) and ``section`` keeps the worst, then a few of the best, so every task is shown the same
way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

RIGHT, WRONG = True, False
"""Values of a ``verdict``: the text or picture is a right answer / the right candidate, or a
wrong one; ``None`` means neither (a question, a reference caption)."""


@dataclass(frozen=True)
class Thumb:
    """A picture of an example: an image, or a video shown by a strip of its frames."""

    path: Path
    label: str = ""
    verdict: bool | None = None
    frames: int = 0
    """0 for an image; for a video, how many frames (evenly spread, the middle one for 1)."""


@dataclass(frozen=True)
class Line:
    """A labelled group of texts (one question, five references, ten human answers)."""

    label: str
    texts: tuple[str, ...]
    verdicts: tuple[bool | None, ...] = ()
    """One per text (or empty): marks the right and wrong ones."""


@dataclass(frozen=True)
class Example:
    sample_id: str
    summary: str
    """How the model did, in a few words: "VQA accuracy 30", "right image at rank 37 of 1000"."""
    thumbs: tuple[Thumb, ...]
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class ExampleSection:
    """Examples of one kind of query of a run (retrieval has two: text to image, image to text)."""

    title: str
    worst: tuple[Example, ...]
    best: tuple[Example, ...]
    total: int
    """How many samples the examples were chosen from."""


def worst_and_best(scores: Mapping[str, float], worst: int, best: int) -> tuple[list[str], list[str]]:
    """The ``worst`` lowest-scoring ids (lowest first) and the ``best`` highest-scoring others
    (highest first); equal scores keep the mapping's order (dataset order), so a report is the
    same every time it is made.

    >>> worst_and_best({"a": 3.0, "b": 1.0, "c": 2.0, "d": 5.0}, worst=2, best=1)
    (['b', 'c'], ['d'])
    """
    low = sorted(scores, key=lambda sample_id: scores[sample_id])[:worst]
    taken = set(low)
    high = [sid for sid in sorted(scores, key=lambda sid: -scores[sid]) if sid not in taken][:best]
    return low, high


def section(title: str, scores: Mapping[str, float], build: Callable[[str], Example],
            worst: int, best: int) -> ExampleSection:
    """The section of the ``worst`` and ``best`` samples by ``scores`` (higher is better); only
    those are built into examples, so a 25,000-query split costs 25,000 numbers, not examples."""
    low, high = worst_and_best(scores, worst, best)
    return ExampleSection(title, tuple(map(build, low)), tuple(map(build, high)), len(scores))
