"""Questions about toy scenes and clips, with their true answers, plus VQA-style annotator noise.

Questions are only asked where the answer is unambiguous ("what color is the circle?" only when
every circle has one colour). VQA, VisDial and the video QA sets all draw from these pools.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.toy.scenes import Clip, Obj, Scene
from harness.toy.vocab import (
    COLOURS,
    INVERSE_RELATION,
    NUMBER_WORDS,
    PLURALS,
    POSITION_PHRASES,
    POSITIONS,
    RELATION_PHRASES,
    RELATION_SIDE,
    SHAPES,
    with_article,
)

QUESTION_TYPES: tuple[str, ...] = ("color", "shape", "count", "position", "yes/no")

_CONFUSED_COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink"),
    "orange": ("yellow", "red"),
    "yellow": ("orange", "green"),
    "green": ("blue", "yellow"),
    "blue": ("purple", "green"),
    "purple": ("blue", "pink"),
    "pink": ("red", "purple"),
    "brown": ("orange", "red"),
}
_CONFUSED_SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("hexagon",),
    "hexagon": ("circle",),
    "square": ("diamond",),
    "diamond": ("square", "triangle"),
    "triangle": ("diamond",),
    "star": ("cross",),
    "cross": ("star",),
}
_MOTION_WORDS: dict[str, str] = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}


@dataclass(frozen=True)
class QA:
    """A question (ending in '?'), its canonical answer and its type (one of QUESTION_TYPES)."""

    question: str
    answer: str
    qtype: str


def _the(obj: Obj, objects: tuple[Obj, ...]) -> str:
    """The shortest name that picks ``obj`` out: 'circle' or, if needed, 'red circle'."""
    if sum(o.shape == obj.shape for o in objects) == 1:
        return obj.shape
    return f"{obj.colour} {obj.shape}"


def _attribute_questions(scene: Scene, rng: random.Random) -> list[QA]:
    objs = scene.objects
    qas: list[QA] = []
    for shape in sorted({o.shape for o in objs}):
        colours = {o.colour for o in objs if o.shape == shape}
        if len(colours) == 1:
            (colour,) = colours
            verb, noun = ("is", shape) if scene.count(shape=shape) == 1 else ("are", PLURALS[shape])
            wrong = rng.choice([c for c in COLOURS if c != colour])
            qas.append(QA(f"what color {verb} the {noun}?", colour, "color"))
            qas.append(QA(f"{verb} the {noun} {colour}?", "yes", "yes/no"))
            qas.append(QA(f"{verb} the {noun} {wrong}?", "no", "yes/no"))
    for colour in sorted({o.colour for o in objs}):
        shapes = {o.shape for o in objs if o.colour == colour}
        if len(shapes) == 1:
            noun = "object" if scene.count(colour=colour) == 1 else "objects"
            verb = "is" if noun == "object" else "are"
            qas.append(QA(f"what shape {verb} the {colour} {noun}?", shapes.pop(), "shape"))
    return qas


def _count_questions(scene: Scene, rng: random.Random) -> list[QA]:
    objs = scene.objects
    qas = [QA("how many objects are there?", str(len(objs)), "count")]
    for shape in sorted({o.shape for o in objs}):
        qas.append(QA(f"how many {PLURALS[shape]} are there?", str(scene.count(shape=shape)), "count"))
    for colour, shape in sorted({(o.colour, o.shape) for o in objs}):
        n = scene.count(shape=shape, colour=colour)
        qas.append(QA(f"how many {colour} {PLURALS[shape]} are there?", str(n), "count"))
    absent = [s for s in SHAPES if scene.count(shape=s) == 0]
    qas.append(QA(f"how many {PLURALS[rng.choice(absent)]} are there?", "0", "count"))
    return qas


def _place_questions(scene: Scene, rng: random.Random) -> list[QA]:
    objs = scene.objects
    qas: list[QA] = []
    if scene.kind == "single" and scene.position:
        o, where = objs[0], scene.position
        qas.append(QA(f"where is the {o.colour} {o.shape}?", where, "position"))
        qas.append(QA(f"is the {o.shape} {POSITION_PHRASES[where][0]}?", "yes", "yes/no"))
        other = rng.choice([p for p in POSITIONS if p != where])
        qas.append(QA(f"is the {o.shape} {POSITION_PHRASES[other][0]}?", "no", "yes/no"))
    if scene.kind == "pair" and scene.relation:
        a, b = objs
        rel, inv = scene.relation, INVERSE_RELATION[scene.relation]
        name_a, name_b = _the(a, objs), _the(b, objs)
        qas.append(QA(f"where is the {name_a}?", RELATION_SIDE[rel], "position"))
        qas.append(QA(f"where is the {name_b}?", RELATION_SIDE[inv], "position"))
        qas.append(QA(f"is the {name_a} {RELATION_PHRASES[rel][0]} the {name_b}?", "yes", "yes/no"))
        qas.append(QA(f"is the {name_a} {RELATION_PHRASES[inv][0]} the {name_b}?", "no", "yes/no"))
        if a.shape != b.shape:
            qas.append(QA(f"what shape is {RELATION_PHRASES[rel][0]} the {name_b}?", a.shape, "shape"))
    return qas


def _existence_questions(scene: Scene, rng: random.Random) -> list[QA]:
    present = sorted({(o.colour, o.shape) for o in scene.objects})
    qas = [QA(f"is there {with_article(f'{c} {s}')}?", "yes", "yes/no") for c, s in present]
    colour, shape = rng.choice(present)
    near_misses = [(c, shape) for c in COLOURS] + [(colour, s) for s in SHAPES]
    anything = [(c, s) for c in COLOURS for s in SHAPES]
    for pool in (near_misses, near_misses, anything):
        c, s = rng.choice([p for p in pool if p not in present])
        qas.append(QA(f"is there {with_article(f'{c} {s}')}?", "no", "yes/no"))
    return qas


def scene_questions(scene: Scene, rng: random.Random) -> list[QA]:
    """Every unambiguous question this pipeline asks about ``scene`` (distinct question texts)."""
    pool = (
        _attribute_questions(scene, rng)
        + _count_questions(scene, rng)
        + _place_questions(scene, rng)
        + _existence_questions(scene, rng)
    )
    unique: dict[str, QA] = {}
    for qa in pool:
        unique.setdefault(qa.question, qa)
    return list(unique.values())


def pick_questions(pool: list[QA], rng: random.Random, n: int) -> list[QA]:
    """``n`` distinct questions spread over question types; yes/no answers split about evenly."""
    by_type = {t: [qa for qa in pool if qa.qtype == t] for t in QUESTION_TYPES}
    chosen: list[QA] = []
    while len(chosen) < n:
        types = [t for t in QUESTION_TYPES if any(qa not in chosen for qa in by_type[t])]
        if not types:
            raise ValueError(f"only {len(chosen)} questions available, {n} wanted")
        qtype = rng.choice(types)
        options = [qa for qa in by_type[qtype] if qa not in chosen]
        if qtype == "yes/no":
            wanted = rng.choice(("yes", "no"))
            options = [qa for qa in options if qa.answer == wanted] or options
        chosen.append(rng.choice(options))
    return chosen


def _agreeing(qa: QA, rng: random.Random) -> str:
    """A correct answer as a person might type it (the VQA normalisation maps it back)."""
    if qa.qtype == "count" and rng.random() < 0.3:
        return NUMBER_WORDS[int(qa.answer)]
    if qa.qtype in ("shape", "position") and rng.random() < 0.2:
        return f"{'a' if qa.qtype == 'shape' else 'the'} {qa.answer}"
    return qa.answer


def _mistaken(qa: QA, rng: random.Random) -> str:
    """A wrong answer of the kind annotators give."""
    if qa.qtype == "count":
        n = int(qa.answer)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    if qa.qtype == "color":
        return rng.choice(_CONFUSED_COLOURS[qa.answer])
    if qa.qtype == "shape":
        return rng.choice(_CONFUSED_SHAPES[qa.answer])
    if qa.qtype == "position":
        return "middle" if qa.answer == "center" else rng.choice([p for p in POSITIONS if p != qa.answer])
    return "no" if qa.answer == "yes" else "yes"


def annotator_answers(qa: QA, rng: random.Random, n: int = 10) -> list[str]:
    """``n`` human-like answers: 6-10 agree with the truth (in varied spellings), the rest err."""
    agree = rng.choices((10, 9, 8, 7, 6), weights=(3, 3, 4, 2, 1))[0]
    answers = [_agreeing(qa, rng) for _ in range(agree)] + [_mistaken(qa, rng) for _ in range(n - agree)]
    rng.shuffle(answers)
    return answers


VQA_ANSWERS: tuple[str, ...] = tuple(
    sorted(set(COLOURS) | set(SHAPES) | set(POSITIONS) | {str(i) for i in range(6)} | {"yes", "no", "middle"})
)
"""Every canonical VQA toy answer (plus the one common mistake that is not), in sorted order."""


def clip_questions(clip: Clip) -> list[QA]:
    """Questions about a clip in MSRVTT-QA style: one-word answers, no yes/no."""
    m, s = clip.mover, clip.static
    qas = [
        QA("what is moving?", m.shape, "shape"),
        QA("what color is the moving object?", m.colour, "color"),
        QA(f"which way does the {m.shape} move?", clip.direction, "position"),
        QA(f"what shape moves {_MOTION_WORDS[clip.direction]}?", m.shape, "shape"),
        QA("how many objects are there?", NUMBER_WORDS[1 if s is None else 2], "count"),
    ]
    if s is not None:
        qas.append(QA("what shape stays still?", s.shape, "shape"))
        qas.append(QA("what color is the object that does not move?", s.colour, "color"))
        if s.shape != m.shape:
            qas.append(QA(f"what color is the {m.shape}?", m.colour, "color"))
    return qas


VIDEO_QA_ANSWERS: tuple[str, ...] = tuple(
    sorted(set(COLOURS) | set(SHAPES) | set(_MOTION_WORDS) | {NUMBER_WORDS[1], NUMBER_WORDS[2]})
)
"""Every answer the video QA sets use, in sorted order."""
