"""Deterministic writers and random streams shared by the toy data-set builders.

Every file must come out byte-identical for a seed, so JSON is written with fixed separators and
key order, images with fixed encoder settings and no metadata, and each data set split draws from
its own named random stream (adding a data set never changes another one's bytes).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

JPEG_QUALITY = 92


def stream(seed: int, *names: str) -> random.Random:
    """An independent random stream for one named part of the suite (e.g. "coco", "test")."""
    return random.Random("/".join([str(seed), *names]))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as compact JSON (the released BLIP files are compact too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write one JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def save_image(image: Image.Image, path: Path) -> None:
    """Save as JPEG (4:4:4, so small coloured shapes keep their colour) or PNG, by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
