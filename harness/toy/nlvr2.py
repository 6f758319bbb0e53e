"""NLVR2 in BLIP's ``nlvr_{train,dev,test}.json``: statements about an image *pair*.

Each statement needs both pictures ("both", "exactly one image", "neither", or one named side
of the pair), and every statement template is used for true and false statements alike: the
label is chosen first (half True, half False per split) and parameters are drawn until the
statement has it, so the text alone does not give the label away.

The statements are about colours and shapes present, with one to three large objects per
picture: what a tiny model trained for minutes on a CPU can learn to see. Counting and
comparisons (version 1 of the toy suite) left a twin model that memorised its training pairs
at chance on the test pairs; colour statements are learnt (about 90 % on held-out pairs),
shape statements only partly (about 60 %), which leaves headroom to tell better models apart.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from harness.toy.draw import render
from harness.toy.output import save_image, stream, write_json
from harness.toy.scenes import Palette, Scene, mixed_scene
from harness.toy.sizes import NLVR2_PAIRS
from harness.toy.vocab import with_article

PALETTE = Palette(
    colours=("red", "blue", "green", "yellow"),
    shapes=("circle", "square", "triangle", "star"),
    rare_colours=(),
    rare_shapes=(),
    p_rare=0.0,
)
"""A smaller palette than elsewhere, so that 'both images contain a red object' is often true."""
MAX_OBJECTS = 3
RADIUS = (8.0, 12.0)
"""Larger than in the captioning scenes (5-8 px on the 64 px canvas), so a 16 px patch sees a
shape, not a blob of colour."""

_FILES = {"train": "nlvr_train.json", "dev": "nlvr_dev.json", "test1": "nlvr_test.json"}

Statement = Callable[[random.Random, Scene, Scene], tuple[str, bool]]


def _sides(rng: random.Random, left: Scene, right: Scene) -> tuple[str, str, Scene, Scene]:
    return ("left", "right", left, right) if rng.random() < 0.5 else ("right", "left", right, left)


def _both_colour(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    colour = rng.choice(PALETTE.colours)
    return f"both images contain a {colour} object", left.count(colour=colour) > 0 and right.count(
        colour=colour
    ) > 0


def _exactly_one_colour(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    colour = rng.choice(PALETTE.colours)
    return f"exactly one image contains a {colour} object", (left.count(colour=colour) > 0) != (
        right.count(colour=colour) > 0
    )


def _neither_colour(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    colour = rng.choice(PALETTE.colours)
    return f"neither image contains a {colour} object", left.count(colour=colour) + right.count(colour=colour) == 0


def _side_colour(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    side, _, a, _ = _sides(rng, left, right)
    colour = rng.choice(PALETTE.colours)
    return f"the {side} image contains a {colour} object", a.count(colour=colour) > 0


def _both_shape(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    shape = rng.choice(PALETTE.shapes)
    return f"both images contain {with_article(shape)}", left.count(shape=shape) > 0 and right.count(
        shape=shape
    ) > 0


def _exactly_one_shape(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    shape = rng.choice(PALETTE.shapes)
    return f"exactly one image contains {with_article(shape)}", (left.count(shape=shape) > 0) != (
        right.count(shape=shape) > 0
    )


STATEMENTS: tuple[Statement, ...] = (
    _both_colour,
    _exactly_one_colour,
    _neither_colour,
    _side_colour,
    _both_shape,
    _exactly_one_shape,
)


def _statement(rng: random.Random, left: Scene, right: Scene, label: bool) -> str | None:
    """A statement with truth value ``label`` for this pair, or None if a few tries find none."""
    for _ in range(4):
        template = rng.choice(STATEMENTS)
        for _ in range(12):
            text, truth = template(rng, left, right)
            if truth == label:
                return text
    return None


def build_nlvr2(root: Path, seed: int) -> None:
    """nlvr2/images/{train,dev,test1}/<split>-<i>-0-img{0,1}.png, nlvr2/annotations/nlvr_*.json."""
    for split, n in NLVR2_PAIRS.items():
        rng = stream(seed, "nlvr2", split)
        labels = [i % 2 == 0 for i in range(n)]
        rng.shuffle(labels)
        records = []
        for i, label in enumerate(labels):
            sentence = None
            while sentence is None:
                left, right = (mixed_scene(rng, PALETTE, MAX_OBJECTS, RADIUS) for _ in range(2))
                sentence = _statement(rng, left, right, label)
            paths = [f"{split}/{split}-{i}-0-img{k}.png" for k in (0, 1)]
            for scene, rel in zip((left, right), paths, strict=True):
                save_image(render(scene), root / "images" / rel)
            records.append({"images": paths, "sentence": sentence, "label": str(label)})
        write_json(root / "annotations" / _FILES[split], records)
