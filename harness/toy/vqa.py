"""VQA v2 in BLIP's files: ``vqa_{train,val,test}.json`` and ``answer_list.json``.

Records carry ``dataset: "vqa"`` like BLIP's own files (its loader dispatches on it); test records
have no ``answer``. Ten answers per question disagree realistically and mix spellings ("2",
"two", "a circle") so the official answer normalisation is exercised.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from harness.toy.draw import render
from harness.toy.output import save_image, stream, write_json
from harness.toy.questions import VQA_ANSWERS, annotator_answers, pick_questions, scene_questions
from harness.toy.scenes import Palette, captionable_scene, split_items
from harness.toy.sizes import VQA_ANSWERS_PER_QUESTION, VQA_IMAGES, VQA_QUESTIONS_PER_IMAGE

_FOLDERS = {"train": "train2014", "val": "val2014", "test": "test2015"}


def build_vqa(root: Path, seed: int) -> None:
    """vqav2/images/{train2014,val2014,test2015}/, vqav2/annotations/vqa_*.json, answer_list.json."""
    palette = Palette()
    ids = iter(stream(seed, "vqav2", "ids").sample(range(1, 581930), sum(VQA_IMAGES.values())))
    seen: set[tuple] = set()
    for split, n in VQA_IMAGES.items():
        rng = stream(seed, "vqav2", split)
        scenes = split_items(partial(captionable_scene, rng, palette), n, split != "train", seen)
        records = []
        for scene, image_id in zip(scenes, ids, strict=False):
            folder = _FOLDERS[split]
            rel = f"{folder}/COCO_{folder}_{image_id:012d}.jpg"
            save_image(render(scene), root / "images" / rel)
            for k, qa in enumerate(pick_questions(scene_questions(scene, rng), rng, VQA_QUESTIONS_PER_IMAGE)):
                record = {
                    "question_id": image_id * 1000 + k,
                    "question": qa.question,
                    "image": rel,
                    "dataset": "vqa",
                }
                if split != "test":
                    record["answer"] = annotator_answers(qa, rng, VQA_ANSWERS_PER_QUESTION)
                records.append(record)
        write_json(root / "annotations" / f"vqa_{split}.json", records)
    write_json(root / "annotations" / "answer_list.json", list(VQA_ANSWERS))
