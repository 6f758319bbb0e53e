"""COCO and Flickr30k in BLIP's Karpathy-split files (retrieval and captioning).

Train: one record per caption ``{image, caption, image_id}``; val/test: ``{image, caption: [5]}``.
COCO also gets the ``*_gt.json`` files in COCO caption format that BLIP's caption evaluation
reads; their integer image ids are the numbers in the COCO file names, as BLIP derives them.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from harness.toy.captions import scene_captions
from harness.toy.draw import render
from harness.toy.output import save_image, stream, write_json
from harness.toy.scenes import Palette, Scene, captionable_scene, split_items
from harness.toy.sizes import CAPTIONS_PER_IMAGE, COCO_IMAGES, COCO_RESTVAL_FRACTION, FLICKR_IMAGES

PALETTE = Palette()
"""Rare colours and shapes stay scarce here so NoCaps' out-of-domain images are novel."""


def split_scenes(seed: int, dataset: str, sizes: dict[str, int]) -> dict[str, list[Scene]]:
    """Scenes per split: train may repeat a signature; val and test never do (not even across)."""
    seen: set[tuple] = set()
    return {
        split: split_items(
            partial(captionable_scene, stream(seed, dataset, split, "scenes"), PALETTE),
            n,
            split != "train",
            seen,
        )
        for split, n in sizes.items()
    }


def _write_splits(
    root: Path, seed: int, dataset: str, files: dict[str, dict[str, tuple[str, Scene]]]
) -> dict[str, list[tuple[str, list[str]]]]:
    """Draw every image, write ``{dataset}_{split}.json`` and return (path, captions) per split."""
    captioned: dict[str, list[tuple[str, list[str]]]] = {}
    for split, items in files.items():
        rng = stream(seed, dataset, split, "captions")
        records: list[dict] = []
        captioned[split] = []
        for image_id, (rel, scene) in items.items():
            save_image(render(scene), root / "images" / rel)
            captions = scene_captions(scene, rng, CAPTIONS_PER_IMAGE)
            captioned[split].append((rel, captions))
            if split == "train":
                records += [{"image": rel, "caption": c, "image_id": image_id} for c in captions]
            else:
                records.append({"image": rel, "caption": captions})
        write_json(root / "annotations" / f"{dataset}_{split}.json", records)
    return captioned


def _coco_gt(items: list[tuple[str, list[str]]]) -> dict:
    images, annotations = [], []
    for rel, captions in items:
        image_id = int(Path(rel).stem.rsplit("_", 1)[1])
        images.append({"id": image_id, "file_name": Path(rel).name})
        for caption in captions:
            annotations.append({"image_id": image_id, "caption": caption, "id": len(annotations) + 1})
    return {
        "info": {"description": "harness toy COCO Karpathy split"},
        "licenses": [],
        "type": "captions",
        "images": images,
        "annotations": annotations,
    }


def _coco_path(rng: random.Random, split: str, image_id: int) -> str:
    restval = split == "train" and rng.random() < COCO_RESTVAL_FRACTION
    folder = "train2014" if split == "train" and not restval else "val2014"
    return f"{folder}/COCO_{folder}_{image_id:012d}.jpg"


def build_coco(root: Path, seed: int) -> None:
    """coco/images/{train2014,val2014}/, coco/annotations/coco_karpathy_*.json (+ *_gt.json)."""
    scenes = split_scenes(seed, "coco", COCO_IMAGES)
    rng = stream(seed, "coco", "ids")
    ids = iter(rng.sample(range(1, 581930), sum(COCO_IMAGES.values())))
    files: dict[str, dict[str, tuple[str, Scene]]] = {}
    for split, split_scenes_ in scenes.items():
        files[split] = {}
        for scene in split_scenes_:
            image_id = next(ids)
            files[split][f"coco_{image_id}"] = (_coco_path(rng, split, image_id), scene)
    captioned = _write_splits(root, seed, "coco_karpathy", files)
    for split in ("val", "test"):
        write_json(root / "annotations" / f"coco_karpathy_{split}_gt.json", _coco_gt(captioned[split]))


def build_flickr(root: Path, seed: int) -> None:
    """flickr30k/images/flickr30k-images/<id>.jpg, flickr30k/annotations/flickr30k_*.json."""
    scenes = split_scenes(seed, "flickr30k", FLICKR_IMAGES)
    rng = stream(seed, "flickr30k", "ids")
    ids = iter(rng.sample(range(10_000_000, 5_000_000_000), sum(FLICKR_IMAGES.values())))
    files = {
        split: {
            str(image_id): (f"flickr30k-images/{image_id}.jpg", scene)
            for scene, image_id in zip(split_scenes_, ids, strict=False)
        }
        for split, split_scenes_ in scenes.items()
    }
    _write_splits(root, seed, "flickr30k", files)
