"""NoCaps validation in BLIP's ``nocaps_val.json`` plus the official 10-caption annotation file.

Domains follow the real benchmark's idea: in-domain uses only what COCO's toy train split is full
of, near-domain swaps in rare colours or rare shapes, out-domain uses rare colours *and* shapes.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from harness.toy.captions import scene_captions
from harness.toy.draw import render
from harness.toy.output import save_image, stream, write_json
from harness.toy.scenes import CANVAS, Palette, Scene, captionable_scene, unique
from harness.toy.sizes import NOCAPS_CAPTIONS_PER_IMAGE, NOCAPS_IMAGES_PER_DOMAIN
from harness.toy.vocab import COMMON_COLOURS, COMMON_SHAPES, RARE_COLOURS, RARE_SHAPES

DOMAIN_PALETTES: dict[str, tuple[Palette, ...]] = {
    "in-domain": (Palette(p_rare=0.0),),
    "near-domain": (
        Palette(colours=RARE_COLOURS, shapes=COMMON_SHAPES, p_rare=0.0),
        Palette(colours=COMMON_COLOURS, shapes=RARE_SHAPES, p_rare=0.0),
    ),
    "out-domain": (Palette(colours=RARE_COLOURS, shapes=RARE_SHAPES, p_rare=0.0),),
}


def _domain_scene(rng: random.Random, palettes: tuple[Palette, ...]) -> Scene:
    return captionable_scene(rng, rng.choice(palettes))


def build_nocaps(root: Path, seed: int) -> None:
    """nocaps/images/<hex>.jpg, nocaps/annotations/nocaps_val.json and nocaps_val_4500_captions.json."""
    rng = stream(seed, "nocaps", "val")
    seen: set[tuple] = set()
    items = [
        (domain, scene)
        for domain, palettes in DOMAIN_PALETTES.items()
        for scene in unique(partial(_domain_scene, rng, palettes), NOCAPS_IMAGES_PER_DOMAIN, seen)
    ]
    rng.shuffle(items)
    names: set[str] = set()
    while len(names) < len(items):
        names.add(f"{rng.getrandbits(64):016x}")
    records, images, annotations = [], [], []
    for img_id, ((domain, scene), name) in enumerate(zip(items, sorted(names), strict=True)):
        file_name = f"{name}.jpg"
        save_image(render(scene), root / "images" / file_name)
        records.append({"image": file_name, "img_id": img_id})
        images.append(
            {
                "id": img_id,
                "file_name": file_name,
                "open_images_id": name,
                "height": CANVAS,
                "width": CANVAS,
                "domain": domain,
            }
        )
        for caption in scene_captions(scene, rng, NOCAPS_CAPTIONS_PER_IMAGE):
            annotations.append({"image_id": img_id, "id": len(annotations), "caption": caption})
    write_json(root / "annotations" / "nocaps_val.json", records)
    write_json(
        root / "annotations" / "nocaps_val_4500_captions.json",
        {
            "licenses": [],
            "info": {"description": "harness toy NoCaps val"},
            "images": images,
            "annotations": annotations,
        },
    )
