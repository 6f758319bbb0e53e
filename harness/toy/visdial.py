"""VisDial v1.0: ``visdial_1.0_{train,val}.json`` and the val dense relevance annotations.

Questions and answers are stored once in ``data.questions``/``data.answers`` (questions without
the trailing '?', as in the released files) and dialogs point at them by index. Each round has
100 answer options: the ground truth, its paraphrases and unrelated answers. Dense relevance is
1 for the ground truth, 0.5 for a paraphrase, 0 otherwise.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from harness.toy.captions import scene_captions
from harness.toy.draw import render
from harness.toy.output import save_image, stream, write_json
from harness.toy.questions import QA, pick_questions, scene_questions
from harness.toy.scenes import Palette, captionable_scene, split_items
from harness.toy.sizes import VISDIAL_DIALOGS, VISDIAL_OPTIONS, VISDIAL_ROUNDS
from harness.toy.vocab import COLOURS, NUMBER_WORDS, POSITION_PHRASES, POSITIONS, SHAPES, with_article

_SPLIT_NAMES = {"train": "train", "val": "val2018"}
_IMAGE_NAMES = {"train": "COCO_train2014_{:012d}.jpg", "val": "VisualDialog_val2018_{:012d}.jpg"}
_FILLERS: tuple[str, ...] = (
    "i can't tell",
    "not sure",
    "hard to say",
    "i don't know",
    "maybe",
    "no people",
    "no animals",
    "it is a drawing",
    "just shapes",
    "the background is plain",
    "no text",
    "it is not a photo",
)


def answer_forms(qtype: str, answer: str) -> tuple[str, ...]:
    """Ways a person answers with the meaning ``answer``; the first is the canonical one."""
    if qtype == "color":
        return (answer, f"it is {answer}", f"it's {answer}", f"{answer} i think")
    if qtype == "shape":
        return (
            answer,
            with_article(answer),
            f"it is {with_article(answer)}",
            f"looks like {with_article(answer)}",
        )
    if qtype == "count":
        n = int(answer)
        if n == 0:
            return ("0", "zero", "none", "there are none")
        if n == 1:
            return ("1", "one", "there is one", "just one")
        return (answer, NUMBER_WORDS[n], f"there are {NUMBER_WORDS[n]}", f"i see {NUMBER_WORDS[n]}")
    if qtype == "position":
        near, also, _ = POSITION_PHRASES[answer]
        return (answer, near, f"it is {near}", also)
    if answer == "yes":
        return ("yes", "yes it is", "yep", "yes, i think so")
    return ("no", "no it is not", "nope", "no, i don't think so")


def _meanings() -> list[tuple[str, str]]:
    return (
        [("color", c) for c in COLOURS]
        + [("shape", s) for s in SHAPES]
        + [("count", str(n)) for n in range(5)]
        + [("position", p) for p in POSITIONS]
        + [("yes/no", "yes"), ("yes/no", "no")]
    )


ANSWER_POOL: tuple[str, ...] = tuple(
    sorted({f for m in _meanings() for f in answer_forms(*m)} | set(_FILLERS))
)
"""Every answer string a toy dialog can use; ``data.answers`` is this list."""


def _round(rng: random.Random, qa: QA) -> tuple[str, list[str], set[str]]:
    """The ground-truth answer, the 100 shuffled options and the paraphrases among them."""
    forms = answer_forms(qa.qtype, qa.answer)
    gt = rng.choice(forms)
    paraphrases = {f for f in forms if f != gt}
    others = [a for a in ANSWER_POOL if a not in forms]
    options = [gt, *sorted(paraphrases), *rng.sample(others, VISDIAL_OPTIONS - len(forms))]
    rng.shuffle(options)
    return gt, options, paraphrases


def build_visdial(root: Path, seed: int) -> None:
    """visdial/images/*.jpg, visdial/annotations/visdial_1.0_{train,val}.json and val dense file."""
    palette = Palette()
    answer_index = {a: i for i, a in enumerate(ANSWER_POOL)}
    ids = iter(stream(seed, "visdial", "ids").sample(range(1, 600000), sum(VISDIAL_DIALOGS.values())))
    for split, n in VISDIAL_DIALOGS.items():
        rng = stream(seed, "visdial", split)
        scenes = split_items(partial(captionable_scene, rng, palette), n, split != "train")
        dialogs, dense = [], []
        for scene, image_id in zip(scenes, ids, strict=False):
            save_image(render(scene), root / "images" / _IMAGE_NAMES[split].format(image_id))
            qas = pick_questions(scene_questions(scene, rng), rng, VISDIAL_ROUNDS)
            rounds = []
            for qa in qas:
                gt, options, paraphrases = _round(rng, qa)
                rounds.append((qa.question.rstrip("?"), gt, options, paraphrases))
            dense_round = rng.randint(1, VISDIAL_ROUNDS)
            _, gt, options, paraphrases = rounds[dense_round - 1]
            relevance = [1.0 if o == gt else 0.5 if o in paraphrases else 0.0 for o in options]
            dense.append({"image_id": image_id, "round_id": dense_round, "gt_relevance": relevance})
            dialogs.append((image_id, scene_captions(scene, rng, 1)[0], rounds))
        questions = sorted({question for _, _, rounds in dialogs for question, *_ in rounds})
        question_index = {q: i for i, q in enumerate(questions)}
        data = {
            "questions": questions,
            "answers": list(ANSWER_POOL),
            "dialogs": [
                {
                    "image_id": image_id,
                    "caption": caption,
                    "dialog": [
                        {
                            "question": question_index[question],
                            "answer": answer_index[gt],
                            "answer_options": [answer_index[o] for o in options],
                            "gt_index": options.index(gt),
                        }
                        for question, gt, options, _ in rounds
                    ],
                }
                for image_id, caption, rounds in dialogs
            ],
        }
        write_json(
            root / "annotations" / f"visdial_1.0_{split}.json",
            {"version": "1.0", "split": _SPLIT_NAMES[split], "data": data},
        )
        if split == "val":
            write_json(root / "annotations" / "visdial_1.0_val_dense_annotations.json", dense)
