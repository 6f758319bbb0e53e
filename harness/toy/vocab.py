"""The closed vocabulary every toy scene, caption and question is built from.

The toy suite exists so that a tiny model can *learn* every BLIP task in minutes; a small closed
world (colours, shapes, counts, places, motions) with a few synonyms keeps the tasks learnable
while still forcing the model to bind attributes to objects. "Rare" colours and shapes are kept
scarce in the captioning training data so NoCaps' near- and out-of-domain splits mean something.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 50, 175),
    "orange": (245, 135, 25),
    "pink": (245, 135, 185),
    "brown": (120, 75, 35),
}
COMMON_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
RARE_COLOURS: tuple[str, ...] = ("pink", "brown")

COMMON_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
RARE_SHAPES: tuple[str, ...] = ("diamond", "hexagon")
SHAPES: tuple[str, ...] = COMMON_SHAPES + RARE_SHAPES

PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES} | {"cross": "crosses"}

# Alternative words a caption may use; the first entry is the canonical one (used in answers).
COLOUR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOURS} | {"purple": ("purple", "violet")}
SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {s: ((s, PLURALS[s]),) for s in SHAPES} | {
    "circle": (("circle", "circles"), ("disk", "disks")),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
}

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five")

POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "on the left side", "at the left of the picture"),
    "right": ("on the right", "on the right side", "at the right of the picture"),
    "top": ("at the top", "near the top", "at the top of the picture"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom of the picture"),
    "center": ("in the center", "in the middle", "in the middle of the picture"),
}

# Relations of the first object to the second; the inverse lets captions swap the two objects.
RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below")
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left_of": ("to the left of", "left of", "on the left of"),
    "right_of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
INVERSE_RELATION: dict[str, str] = {
    "left_of": "right_of",
    "right_of": "left_of",
    "above": "below",
    "below": "above",
}
# Where the first object of a relation sits, named as a position answer.
RELATION_SIDE: dict[str, str] = {"left_of": "left", "right_of": "right", "above": "top", "below": "bottom"}

MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moves to the left", "slides to the left", "travels from right to left", "is moving left"),
    "right": ("moves to the right", "slides to the right", "travels from left to right", "is moving right"),
    "up": ("moves up", "slides upward", "travels from the bottom to the top", "is moving up"),
    "down": ("moves down", "slides downward", "travels from the top to the bottom", "is moving down"),
}


def article(word: str) -> str:
    """The indefinite article for ``word`` ("an orange circle", "a red circle")."""
    return "an" if word[0] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    """``phrase`` preceded by its indefinite article."""
    return f"{article(phrase)} {phrase}"
