"""Toy scenes: what is in a picture (objects with colour, shape, place) independent of pixels.

Captions, questions and NLVR2 statements are all derived from a ``Scene`` so that every label is
true of its image by construction; ``draw.render`` turns a scene into pixels.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from harness.toy.vocab import (
    COLOURS,
    COMMON_COLOURS,
    COMMON_SHAPES,
    INVERSE_RELATION,
    MOTIONS,
    POSITIONS,
    RARE_COLOURS,
    RARE_SHAPES,
    RELATIONS,
    RGB,
)

CANVAS = 64
"""Side of every toy image and video frame in pixels."""

KIND_WEIGHTS: dict[str, float] = {"single": 0.35, "group": 0.3, "pair": 0.35}
"""How often each captionable scene kind is drawn."""

T = TypeVar("T", bound="Scene | Clip")

_ANCHORS: dict[str, tuple[float, float]] = {
    "left": (16, 32),
    "right": (48, 32),
    "top": (32, 16),
    "bottom": (32, 48),
    "center": (32, 32),
}


@dataclass(frozen=True)
class Obj:
    """One filled shape; ``x``/``y`` is its centre in pixels, ``rgb`` its jittered fill."""

    shape: str
    colour: str
    x: float
    y: float
    radius: float
    rgb: RGB


@dataclass(frozen=True)
class Scene:
    """A picture's content.

    ``kind`` is "single" (one object at ``position``), "group" (2-4 identical objects), "pair"
    (``objects[0]`` is ``relation`` of ``objects[1]``) or "mixed" (1-4 arbitrary objects, NLVR2).
    """

    kind: str
    objects: tuple[Obj, ...]
    background: RGB
    position: str | None = None
    relation: str | None = None

    def count(self, shape: str | None = None, colour: str | None = None) -> int:
        """Number of objects matching the given shape and/or colour."""
        return sum(
            (shape is None or o.shape == shape) and (colour is None or o.colour == colour)
            for o in self.objects
        )

    def signature(self) -> tuple:
        """What a caption can tell apart; two scenes with one signature are indistinguishable."""
        first = self.objects[0]
        if self.kind == "single":
            return ("single", first.colour, first.shape, self.position)
        if self.kind == "group":
            return ("group", first.colour, first.shape, len(self.objects))
        if self.kind == "pair":
            a, b = ((o.colour, o.shape) for o in self.objects)
            relation = self.relation
            if relation in ("right_of", "below"):
                a, b, relation = b, a, INVERSE_RELATION[relation]
            return ("pair", a, relation, b)
        return ("mixed", tuple(sorted(Counter((o.colour, o.shape) for o in self.objects).items())))


@dataclass(frozen=True)
class Palette:
    """Which colours and shapes a data set draws from; rare ones appear with ``p_rare``."""

    colours: tuple[str, ...] = COMMON_COLOURS
    shapes: tuple[str, ...] = COMMON_SHAPES
    rare_colours: tuple[str, ...] = RARE_COLOURS
    rare_shapes: tuple[str, ...] = RARE_SHAPES
    p_rare: float = 0.05
    kind_weights: dict[str, float] = field(default_factory=lambda: dict(KIND_WEIGHTS))

    def colour(self, rng: random.Random) -> str:
        """A colour name, rare with probability ``p_rare``."""
        if self.rare_colours and rng.random() < self.p_rare:
            return rng.choice(self.rare_colours)
        return rng.choice(self.colours)

    def shape(self, rng: random.Random) -> str:
        """A shape name, rare with probability ``p_rare``."""
        if self.rare_shapes and rng.random() < self.p_rare:
            return rng.choice(self.rare_shapes)
        return rng.choice(self.shapes)


def background(rng: random.Random) -> RGB:
    """A light, slightly tinted plain background."""
    base = rng.randint(226, 248)
    return tuple(min(255, base + rng.randint(-6, 6)) for _ in range(3))  # type: ignore[return-value]


def make_obj(rng: random.Random, shape: str, colour: str, x: float, y: float, radius: float) -> Obj:
    """An object with its colour jittered a little so no two reds are identical."""
    rgb = tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in COLOURS[colour])
    return Obj(shape, colour, round(x, 2), round(y, 2), round(radius, 2), rgb)  # type: ignore[arg-type]


def scatter(rng: random.Random, specs: list[tuple[str, str]], rmin: float, rmax: float) -> tuple[Obj, ...]:
    """Place objects (shape, colour) at random without overlap (rejection sampling)."""
    while True:
        placed: list[Obj] = []
        for shape, colour in specs:
            for _ in range(100):
                r = rng.uniform(rmin, rmax)
                x, y = rng.uniform(r + 2, CANVAS - r - 2), rng.uniform(r + 2, CANVAS - r - 2)
                if all((x - o.x) ** 2 + (y - o.y) ** 2 > (r + o.radius + 3) ** 2 for o in placed):
                    placed.append(make_obj(rng, shape, colour, x, y, r))
                    break
            else:
                break
        if len(placed) == len(specs):
            return tuple(placed)


def single_scene(rng: random.Random, palette: Palette) -> Scene:
    """One object at one of five named positions."""
    shape, colour, position = palette.shape(rng), palette.colour(rng), rng.choice(POSITIONS)
    ax, ay = _ANCHORS[position]
    obj = make_obj(rng, shape, colour, ax + rng.uniform(-3, 3), ay + rng.uniform(-3, 3), rng.uniform(7, 10))
    return Scene("single", (obj,), background(rng), position=position)


def group_scene(rng: random.Random, palette: Palette) -> Scene:
    """Two to four identical objects scattered over the picture."""
    spec = (palette.shape(rng), palette.colour(rng))
    return Scene("group", scatter(rng, [spec] * rng.randint(2, 4), 5, 8), background(rng))


def pair_scene(rng: random.Random, palette: Palette) -> Scene:
    """Two different objects in a clear left/right or above/below relation."""
    a = (palette.shape(rng), palette.colour(rng))
    b = a
    while b == a:
        b = (palette.shape(rng), palette.colour(rng))
    relation = rng.choice(RELATIONS)
    near, far = rng.uniform(11, 21), rng.uniform(43, 53)
    across_a = rng.uniform(18, 46)
    across_b = min(48.0, max(16.0, across_a + rng.uniform(-10, 10)))
    along_a, along_b = (near, far) if relation in ("left_of", "above") else (far, near)
    horizontal = relation in ("left_of", "right_of")
    centres = [
        (along, across) if horizontal else (across, along)
        for along, across in ((along_a, across_a), (along_b, across_b))
    ]
    objects = tuple(
        make_obj(rng, shape, colour, x, y, rng.uniform(6, 9))
        for (shape, colour), (x, y) in zip((a, b), centres, strict=True)
    )
    return Scene("pair", objects, background(rng), relation=relation)


def mixed_scene(
    rng: random.Random, palette: Palette, max_objects: int = 4, radius: tuple[float, float] = (5.0, 8.0)
) -> Scene:
    """One to ``max_objects`` objects of any colour and shape, each of a radius drawn from
    ``radius`` (NLVR2's pictures)."""
    n = rng.randint(1, max_objects)
    specs = [(palette.shape(rng), palette.colour(rng)) for _ in range(n)]
    return Scene("mixed", scatter(rng, specs, *radius), background(rng))


_MAKERS = {"single": single_scene, "group": group_scene, "pair": pair_scene}


def captionable_scene(rng: random.Random, palette: Palette) -> Scene:
    """A single, group or pair scene, chosen with the palette's kind weights."""
    kinds = list(palette.kind_weights)
    kind = rng.choices(kinds, weights=[palette.kind_weights[k] for k in kinds])[0]
    return _MAKERS[kind](rng, palette)


def unique(make: Callable[[], T], n: int, seen: set[tuple] | None = None) -> list[T]:
    """``n`` items from ``make()`` whose signatures differ from each other and from ``seen``.

    Evaluation splits use this so every caption singles out exactly one image or video.
    """
    seen = set() if seen is None else seen
    items: list[T] = []
    for _ in range(n * 200):
        if len(items) == n:
            break
        item = make()
        if item.signature() not in seen:
            seen.add(item.signature())
            items.append(item)
    if len(items) < n:
        raise ValueError(f"cannot draw {n} distinct toy items (got {len(items)})")
    return items


def split_items(make: Callable[[], T], n: int, distinct: bool, seen: set[tuple] | None = None) -> list[T]:
    """``n`` items for one split: any ``make()`` results for training, distinct ones for evaluation."""
    return unique(make, n, seen) if distinct else [make() for _ in range(n)]


_STEP: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class Clip:
    """A video's content: ``mover`` (at its first position) travels ``distance`` px towards
    ``direction`` over the clip; ``static`` (if any) stays where it is."""

    mover: Obj
    direction: str
    distance: float
    background: RGB
    static: Obj | None = None

    def objects_at(self, t: float) -> tuple[Obj, ...]:
        """The objects at time ``t`` in [0, 1], the mover drawn last (on top)."""
        dx, dy = _STEP[self.direction]
        moved = replace(
            self.mover, x=self.mover.x + dx * self.distance * t, y=self.mover.y + dy * self.distance * t
        )
        return (moved,) if self.static is None else (self.static, moved)

    def signature(self) -> tuple:
        """What a caption can tell apart."""
        static = None if self.static is None else (self.static.colour, self.static.shape)
        return (self.mover.colour, self.mover.shape, self.direction, static)


def motion_clip(rng: random.Random, palette: Palette, p_static: float = 0.3) -> Clip:
    """One object crossing most of the frame in one of four directions, sometimes passing a
    second, still object of another kind."""
    direction = rng.choice(MOTIONS)
    r, distance = rng.uniform(6, 9), rng.uniform(28, 36)
    start_along = rng.uniform(r + 2, CANVAS - r - 2 - distance)
    if direction in ("left", "up"):
        start_along = CANVAS - start_along
    across = rng.uniform(r + 4, CANVAS - r - 4)
    horizontal = direction in ("left", "right")
    x, y = (start_along, across) if horizontal else (across, start_along)
    spec = (palette.shape(rng), palette.colour(rng))
    mover = make_obj(rng, *spec, x, y, r)
    static = None
    if rng.random() < p_static:
        other = spec
        while other == spec:
            other = (palette.shape(rng), palette.colour(rng))
        rs = rng.uniform(5, 8)
        gap = r + rs + 4
        lanes = [a for a in (across - gap - 4, across + gap + 4) if rs + 2 <= a <= CANVAS - rs - 2]
        if lanes:
            lane, along = rng.choice(lanes), rng.uniform(rs + 4, CANVAS - rs - 4)
            sx, sy = (along, lane) if horizontal else (lane, along)
            static = make_obj(rng, *other, sx, sy, rs)
    return Clip(mover, direction, round(distance, 2), background(rng), static)
