"""Editing a caption so that it contradicts its image: one colour, number, shape or object word
swapped for another of the same kind.

Such "partially wrong" captions are the hard negatives of a filter test: all but one word still
fit the image. Words are swapped only within a group (a colour for a colour, a plural noun for a
plural noun), never for a synonym of themselves ("purple" is never replaced by "violet"), and only
for words that occur in the split's own captions, so the edited caption uses the split's
vocabulary and a filter cannot spot it by an unfamiliar word. The edit is a word-level swap on a
``pre_caption``-normalised caption; it may occasionally yield a caption that is still true (a
second object of the new colour in the picture), which is the plan's label noise.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

Group = tuple[tuple[str, ...], ...]
"""Interchangeable words of one kind, as sets of synonyms."""

_OBJECTS = (
    "man", "woman", "boy", "girl", "person", "child", "dog", "cat", "horse", "cow", "elephant", "bear",
    "zebra", "giraffe", "bird", "car", "bus", "truck", "train", "bicycle", "motorcycle", "airplane",
    "boat", "pizza", "sandwich", "cake", "banana", "apple", "table", "chair", "couch", "bed", "laptop",
    "clock", "umbrella", "kite", "surfboard", "skateboard",
)
_IRREGULAR_PLURALS = {"man": "men", "woman": "women", "person": "people", "child": "children", "bus": "buses"}

GROUPS: tuple[Group, ...] = (
    # colours
    (("red",), ("green",), ("blue",), ("yellow",), ("purple", "violet"), ("orange",), ("pink",),
     ("brown",), ("black",), ("white",), ("gray", "grey")),
    # numbers
    (("one", "1"), ("two", "2"), ("three", "3"), ("four", "4"), ("five", "5"), ("six", "6")),
    # shapes (the toy suite's objects), singular and plural
    (("circle", "disk"), ("square",), ("triangle",), ("star",), ("cross",), ("diamond",), ("hexagon",)),
    (("circles", "disks"), ("squares",), ("triangles",), ("stars",), ("crosses",), ("diamonds",), ("hexagons",)),
    # common COCO objects, singular and plural
    tuple((word,) for word in _OBJECTS),
    tuple((_IRREGULAR_PLURALS.get(word, word + "s"),) for word in _OBJECTS),
)
"""Every swappable word, by kind; a word belongs to at most one group."""

_SYNONYMS: dict[str, tuple[int, int]] = {
    word: (group, member) for group, synonyms in enumerate(GROUPS) for member, words in enumerate(synonyms) for word in words
}


def replacements(word: str, vocabulary: Iterable[str] | set[str]) -> list[str]:
    """Words of ``word``'s group, other than its synonyms, that occur in ``vocabulary``; sorted,
    so a seeded choice among them is reproducible."""
    place = _SYNONYMS.get(word)
    if place is None:
        return []
    group, member = place
    known = set(vocabulary)
    return sorted(
        other for index, words in enumerate(GROUPS[group]) if index != member for other in words if other in known
    )


def contradict(caption: str, vocabulary: set[str], rng: random.Random) -> str | None:
    """``caption`` with one swappable word (chosen with ``rng``) replaced by another of its group
    from ``vocabulary``; None when no word of the caption can be swapped.

    >>> contradict("a red circle on the left", {"red", "blue", "circle"}, random.Random(0))
    'a blue circle on the left'
    """
    words = caption.split(" ")
    options: Sequence[tuple[int, list[str]]] = [
        (position, choices) for position, word in enumerate(words) if (choices := replacements(word, vocabulary))
    ]
    if not options:
        return None
    position, choices = rng.choice(options)
    return " ".join([*words[:position], rng.choice(choices), *words[position + 1 :]])
