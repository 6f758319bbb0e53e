"""CapFilt's settings: what decides the output, recorded in ``capfilt.json`` and checked on resume.

The threshold is a probability (or cosine) value, or ``top:F``: keep the fraction F of each
source's texts with the highest scores. ``top:F`` is applied per source (web texts, synthetic
captions) within each shard: a global cut would need every shard scored before any could be
written, which defeats per-shard resume, and a shard of thousands of samples estimates the
quantile well; per source, so one source cannot crowd the other out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import ConfigError

DEFAULT_PROBABILITY_THRESHOLD = 0.5
"""The paper's filter keeps a text when the ITM head says "match" (probability >= 0.5)."""
DEFAULT_COSINE_THRESHOLD = 0.28
"""A CLIP-score filter's default: LAION-400M's cosine cut-off (ViT-B/32), the common choice."""
SAMPLINGS = ("nucleus", "beam")


def parse_captioner(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """``--captioner MODEL`` (captions in every round) or ``MODEL@R1,R2`` (only in those rounds):
    the model name and its rounds, so round r+1 can caption with another model than round r."""
    name, at, rounds = spec.partition("@")
    if not at:
        return name, None
    try:
        numbers = tuple(sorted({int(r) for r in rounds.split(",")}))
    except ValueError:
        raise ConfigError(f"--captioner {spec!r}: expected MODEL or MODEL@ROUNDS, e.g. blip@2 or blip@1,3") from None
    if not name or not numbers or numbers[0] < 1:
        raise ConfigError(f"--captioner {spec!r}: expected MODEL or MODEL@ROUNDS with rounds counted from 1")
    return name, numbers


@dataclass(frozen=True)
class Threshold:
    """A fixed score (``value``) or the top fraction of each source per shard (``top_fraction``)."""

    value: float | None = None
    top_fraction: float | None = None

    @classmethod
    def parse(cls, text: str | None, default: float) -> Threshold:
        if text is None or text == "auto":
            return cls(value=default)
        try:
            if text.startswith("top:"):
                fraction = float(text[4:])
                if not 0 < fraction <= 1:
                    raise ValueError
                return cls(top_fraction=fraction)
            return cls(value=float(text))
        except ValueError:
            raise ConfigError(f"--threshold {text!r}: expected a number or top:F with 0 < F <= 1") from None

    def cutoff(self, scores: Sequence[float]) -> float:
        """The lowest score kept among ``scores`` (one source of one shard); ties at the cut are kept."""
        if self.value is not None:
            return self.value
        if not scores:
            return math.inf
        keep = max(1, math.ceil(self.top_fraction * len(scores)))
        return sorted(scores, reverse=True)[keep - 1]

    def describe(self) -> str:
        return f"top:{self.top_fraction:g}" if self.top_fraction is not None else f"{self.value:g}"


@dataclass(frozen=True)
class CapFiltSettings:
    """Everything that decides the output shards; a resumed run must have the same."""

    input: str
    captioners: tuple[str, ...]
    captioner_weights: tuple[str | None, ...]
    filter: str
    filter_weights: str | None
    filter_score: str
    captions_per_image: int
    sampling: str
    top_p: float
    threshold: str
    rounds: int
    limit: int | None
    seed: int
    batch_size: int | None
    precision: str
    shard_size: int
    image_root: str | None
    device: str = "auto"
    """``cpu`` or ``cuda`` once resolved: sampled captions and scores differ slightly between them."""

    def check(self) -> None:
        if self.captions_per_image < 0:
            raise ConfigError("--captions-per-image must be 0 or more")
        if self.rounds < 1:
            raise ConfigError("--rounds must be at least 1")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"--sampling {self.sampling!r}: expected one of {', '.join(SAMPLINGS)}")
        if self.sampling == "beam" and (self.captions_per_image > 1 or self.rounds > 1):
            raise ConfigError(
                "--sampling beam is deterministic: more than one caption per image or round would repeat the same "
                "caption; use --sampling nucleus for --captions-per-image/--rounds above 1"
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError("--top-p must be in (0, 1]")
        for name, value in (("--limit", self.limit), ("--batch-size", self.batch_size), ("--shard-size", self.shard_size)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1")
        if len(self.captioner_weights) > len(self.captioners):
            raise ConfigError("more --captioner-weights than --captioner flags (they pair up in order)")
        covered: set[int] = set()
        for spec in self.captioners:
            _, rounds = parse_captioner(spec)
            if rounds is not None and rounds[-1] > self.rounds:
                raise ConfigError(f"--captioner {spec!r} names round {rounds[-1]}, but --rounds is {self.rounds}")
            covered |= set(range(1, self.rounds + 1) if rounds is None else rounds)
        if uncaptioned := sorted(set(range(1, self.rounds + 1)) - covered):
            raise ConfigError(f"no --captioner captions round(s) {', '.join(map(str, uncaptioned))} of --rounds {self.rounds}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """Keys whose saved value differs from this run's (JSON turns tuples into lists)."""
        mine = json_ready(self.to_json())
        return sorted(k for k in mine.keys() | saved.keys() if mine.get(k) != saved.get(k))


def json_ready(value: Any) -> Any:
    """Tuples as lists, as they come back from JSON."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
