"""Lower-case English captions for toy scenes and clips: templates filled with synonyms.

Every template names every attribute the signature holds (colour, shape, count, place, relation
or motion), so scenes with different signatures never share a caption and retrieval on the toy
test splits has exactly one right answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.toy.scenes import Clip, Obj, Scene
from harness.toy.vocab import (
    COLOUR_WORDS,
    INVERSE_RELATION,
    MOTION_PHRASES,
    NUMBER_WORDS,
    POSITION_PHRASES,
    RELATION_PHRASES,
    RELATION_SIDE,
    SHAPE_WORDS,
    with_article,
)

Template = Callable[[random.Random], str]


def _colour(rng: random.Random, obj: Obj) -> str:
    return rng.choice(COLOUR_WORDS[obj.colour])


def _noun(rng: random.Random, obj: Obj, plural: bool = False) -> str:
    singular, plural_word = rng.choice(SHAPE_WORDS[obj.shape])
    return plural_word if plural else singular


def _thing(rng: random.Random, obj: Obj) -> str:
    """'a red circle', 'an orange disk', ..."""
    return with_article(f"{_colour(rng, obj)} {_noun(rng, obj)}")


def _single_templates(scene: Scene) -> list[Template]:
    o, where = scene.objects[0], POSITION_PHRASES[scene.position or "center"]

    def p(rng: random.Random) -> str:
        return rng.choice(where)

    return [
        lambda r: f"{_thing(r, o)} {p(r)}",
        lambda r: f"there is {_thing(r, o)} {p(r)}",
        lambda r: f"{_thing(r, o)} is {p(r)}",
        lambda r: f"one {_colour(r, o)} {_noun(r, o)} {p(r)}",
        lambda r: f"a single {_colour(r, o)} {_noun(r, o)} {p(r)}",
        lambda r: f"{_thing(r, o)} placed {p(r)} on a plain background",
        lambda r: f"{p(r)}, there is {_thing(r, o)}",
        lambda r: f"{with_article(_noun(r, o))} colored {_colour(r, o)} {p(r)}",
    ]


def _group_templates(scene: Scene) -> list[Template]:
    o, n = scene.objects[0], len(scene.objects)
    every = "both" if n == 2 else "all"

    def num(rng: random.Random) -> str:
        return NUMBER_WORDS[n] if rng.random() < 0.7 else str(n)

    return [
        lambda r: f"{num(r)} {_colour(r, o)} {_noun(r, o, True)}",
        lambda r: f"there are {num(r)} {_colour(r, o)} {_noun(r, o, True)}",
        lambda r: f"{num(r)} {_noun(r, o, True)} that are {_colour(r, o)}",
        lambda r: f"{num(r)} {_colour(r, o)} {_noun(r, o, True)} on a plain background",
        lambda r: f"{num(r)} {_colour(r, o)} {_noun(r, o, True)} scattered around the picture",
        lambda r: f"a group of {num(r)} {_colour(r, o)} {_noun(r, o, True)}",
        lambda r: f"{num(r)} {_noun(r, o, True)}, {every} of them {_colour(r, o)}",
        lambda r: f"{num(r)} {_noun(r, o, True)} colored {_colour(r, o)}",
    ]


def _pair_templates(scene: Scene) -> list[Template]:
    a, b = scene.objects
    relation = scene.relation or "left_of"

    def rel(rng: random.Random) -> str:
        return rng.choice(RELATION_PHRASES[relation])

    def inv(rng: random.Random) -> str:
        return rng.choice(RELATION_PHRASES[INVERSE_RELATION[relation]])

    def short_a(rng: random.Random) -> str:
        return _noun(rng, a) if a.shape != b.shape else f"{_colour(rng, a)} {_noun(rng, a)}"

    def side(rng: random.Random) -> str:
        return rng.choice(POSITION_PHRASES[RELATION_SIDE[relation]])

    return [
        lambda r: f"{_thing(r, a)} {rel(r)} {_thing(r, b)}",
        lambda r: f"there is {_thing(r, a)} {rel(r)} {_thing(r, b)}",
        lambda r: f"{_thing(r, a)} is {rel(r)} {_thing(r, b)}",
        lambda r: f"{_thing(r, b)} {inv(r)} {_thing(r, a)}",
        lambda r: f"{_thing(r, b)} is {inv(r)} {_thing(r, a)}",
        lambda r: f"{_thing(r, a)} and {_thing(r, b)}, with the {short_a(r)} {side(r)}",
        lambda r: f"two shapes: {_thing(r, a)} {rel(r)} {_thing(r, b)}",
        lambda r: f"{_thing(r, a)} sits {rel(r)} {_thing(r, b)}",
    ]


def _clip_templates(clip: Clip) -> list[Template]:
    m, s = clip.mover, clip.static

    def go(rng: random.Random) -> str:
        return rng.choice(MOTION_PHRASES[clip.direction])

    def still(rng: random.Random) -> str:
        if s is None:
            return ""
        return rng.choice(
            (" while {} stays still", " next to {} that does not move", " and {} stays in place")
        ).format(_thing(rng, s))

    return [
        lambda r: f"{_thing(r, m)} {go(r)}{still(r)}",
        lambda r: f"a video of {_thing(r, m)} that {go(r)}{still(r)}",
        lambda r: f"the {_colour(r, m)} {_noun(r, m)} {go(r)}{still(r)}",
        lambda r: f"{_thing(r, m)} {go(r)} on a plain background{still(r)}",
        lambda r: f"in this clip {_thing(r, m)} {go(r)}{still(r)}",
        lambda r: f"{_thing(r, m)} {go(r)} across the frame{still(r)}",
    ]


def _distinct(rng: random.Random, templates: list[Template], n: int) -> list[str]:
    """``n`` different captions, cycling through the templates in a shuffled order."""
    order = rng.sample(templates, len(templates))
    captions: list[str] = []
    for i in range(n * 50):
        caption = order[i % len(order)](rng)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == n:
                return captions
    raise ValueError(f"only {len(captions)} distinct captions, {n} wanted")


_SCENE_TEMPLATES = {"single": _single_templates, "group": _group_templates, "pair": _pair_templates}


def scene_captions(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """``n`` different captions of a single, group or pair scene."""
    return _distinct(rng, _SCENE_TEMPLATES[scene.kind](scene), n)


def clip_captions(clip: Clip, rng: random.Random, n: int = 1) -> list[str]:
    """``n`` different captions of a video clip."""
    return _distinct(rng, _clip_templates(clip), n)
