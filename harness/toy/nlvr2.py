"""NLVR2 in BLIP's ``nlvr_{train,dev,test}.json``: statements about an image *pair*.

Each statement needs both pictures (comparisons, "both", "in total", "exactly one image"), and
every statement template is used for true and false statements alike: the label is chosen
first (half True, half False per split) and parameters are drawn until the statement has it, so
the text alone does not give the label away.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from harness.toy.draw import render
from harness.toy.output import save_image, stream, write_json
from harness.toy.scenes import Palette, Scene, mixed_scene
from harness.toy.sizes import NLVR2_PAIRS
from harness.toy.vocab import NUMBER_WORDS, PLURALS, with_article

PALETTE = Palette(
    colours=("red", "blue", "green", "yellow"),
    shapes=("circle", "square", "triangle", "star"),
    rare_colours=(),
    rare_shapes=(),
    p_rare=0.0,
)
"""A smaller palette than elsewhere, so that 'both images contain a red object' is often true."""

_FILES = {"train": "nlvr_train.json", "dev": "nlvr_dev.json", "test1": "nlvr_test.json"}

Statement = Callable[[random.Random, Scene, Scene], tuple[str, bool]]


def _sides(rng: random.Random, left: Scene, right: Scene) -> tuple[str, str, Scene, Scene]:
    return ("left", "right", left, right) if rng.random() < 0.5 else ("right", "left", right, left)


def _n_things(n: int, shape: str) -> str:
    return f"{NUMBER_WORDS[n]} {shape if n == 1 else PLURALS[shape]}"


def _more_shape(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    side, other, a, b = _sides(rng, left, right)
    shape = rng.choice(PALETTE.shapes)
    text = f"the {side} image contains more {PLURALS[shape]} than the {other} image"
    return text, a.count(shape=shape) > b.count(shape=shape)


def _more_objects(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    side, other, a, b = _sides(rng, left, right)
    return f"there are more objects in the {side} image than in the {other} image", len(a.objects) > len(
        b.objects
    )


def _both_colour(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    colour = rng.choice(PALETTE.colours)
    return f"both images contain a {colour} object", left.count(colour=colour) > 0 and right.count(
        colour=colour
    ) > 0


def _both_shape(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    shape = rng.choice(PALETTE.shapes)
    return f"both images contain {with_article(shape)}", left.count(shape=shape) > 0 and right.count(
        shape=shape
    ) > 0


def _total(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    shape, n = rng.choice(PALETTE.shapes), rng.randint(1, 4)
    text = f"there {'is' if n == 1 else 'are'} exactly {_n_things(n, shape)} in total"
    return text, left.count(shape=shape) + right.count(shape=shape) == n


def _side_has(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    side, _, a, _ = _sides(rng, left, right)
    colour, shape = rng.choice(PALETTE.colours), rng.choice(PALETTE.shapes)
    return f"the {side} image contains {with_article(f'{colour} {shape}')}", a.count(
        shape=shape, colour=colour
    ) > 0


def _side_exact(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    side, _, a, _ = _sides(rng, left, right)
    n = rng.randint(1, 4)
    noun = "object" if n == 1 else "objects"
    return f"the {side} image contains exactly {NUMBER_WORDS[n]} {noun}", len(a.objects) == n


def _exactly_one(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    colour = rng.choice(PALETTE.colours)
    return f"exactly one image contains a {colour} object", (left.count(colour=colour) > 0) != (
        right.count(colour=colour) > 0
    )


def _same_number(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    shape = rng.choice(PALETTE.shapes)
    return f"the two images contain the same number of {PLURALS[shape]}", left.count(
        shape=shape
    ) == right.count(shape=shape)


def _neither(rng: random.Random, left: Scene, right: Scene) -> tuple[str, bool]:
    colour, shape = rng.choice(PALETTE.colours), rng.choice(PALETTE.shapes)
    return f"neither image contains {with_article(f'{colour} {shape}')}", left.count(
        shape=shape, colour=colour
    ) + right.count(shape=shape, colour=colour) == 0


STATEMENTS: tuple[Statement, ...] = (
    _more_shape,
    _more_objects,
    _both_colour,
    _both_shape,
    _total,
    _side_has,
    _side_exact,
    _exactly_one,
    _same_number,
    _neither,
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
                left, right = mixed_scene(rng, PALETTE), mixed_scene(rng, PALETTE)
                sentence = _statement(rng, left, right, label)
            paths = [f"{split}/{split}-{i}-0-img{k}.png" for k in (0, 1)]
            for scene, rel in zip((left, right), paths, strict=True):
                save_image(render(scene), root / "images" / rel)
            records.append({"images": paths, "sentence": sentence, "label": str(label)})
        write_json(root / "annotations" / _FILES[split], records)
