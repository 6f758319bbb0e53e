"""Turn scenes into pixels with PIL only (no randomness here: a scene fixes its picture)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from PIL import Image, ImageDraw

from harness.toy.scenes import CANVAS, Obj, Scene
from harness.toy.vocab import RGB

SUPERSAMPLE = 4
"""Shapes are drawn this many times larger and box-filtered down, which gives smooth edges."""


def _regular(cx: float, cy: float, r: float, n: int, start_deg: float) -> list[tuple[float, float]]:
    step = 2 * math.pi / n
    start = math.radians(start_deg)
    return [(cx + r * math.cos(start + i * step), cy + r * math.sin(start + i * step)) for i in range(n)]


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    outer = _regular(cx, cy, r * 1.1, 5, -90)
    inner = _regular(cx, cy, r * 0.48, 5, -54)
    return [p for pair in zip(outer, inner, strict=True) for p in pair]


def _cross(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    w = r * 0.36
    outline = [
        (-w, -r),
        (w, -r),
        (w, -w),
        (r, -w),
        (r, w),
        (w, w),
        (w, r),
        (-w, r),
        (-w, w),
        (-r, w),
        (-r, -w),
        (-w, -w),
    ]
    return [(cx + dx, cy + dy) for dx, dy in outline]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return _regular(cx, cy + r * 0.15, r * 1.15, 3, -90)
    if shape == "star":
        return _star(cx, cy, r)
    if shape == "cross":
        return _cross(cx, cy, r)
    if shape == "diamond":
        return [(cx, cy - r * 1.1), (cx + r * 0.75, cy), (cx, cy + r * 1.1), (cx - r * 0.75, cy)]
    if shape == "hexagon":
        return _regular(cx, cy, r, 6, 0)
    raise ValueError(f"unknown toy shape {shape!r}")


def render_objects(objects: Iterable[Obj], bg: RGB) -> Image.Image:
    """A CANVAS x CANVAS RGB picture of ``objects`` drawn in order on a plain ``bg``."""
    s = SUPERSAMPLE
    big = Image.new("RGB", (CANVAS * s, CANVAS * s), bg)
    pen = ImageDraw.Draw(big)
    for o in objects:
        cx, cy, r = o.x * s, o.y * s, o.radius * s
        if o.shape == "circle":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=o.rgb)
        else:
            pen.polygon(_polygon(o.shape, cx, cy, r), fill=o.rgb)
    return big.reduce(s)


def render(scene: Scene) -> Image.Image:
    """The picture of ``scene``."""
    return render_objects(scene.objects, scene.background)
