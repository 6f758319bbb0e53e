"""Small img2dataset-style webdataset shards from the toy suite's COCO images, for CapFilt tests.

img2dataset writes each sample as ``KEY.jpg``, ``KEY.txt`` (the alt-text) and ``KEY.json``
(``caption``, ``url``, ``key``, ``status``, ...); keys are the shard number and the position in
it. Every third sample gets another image's caption (planted noise) and one sample has a corrupt
image, so a run has something to filter and a bad sample to count.
"""

from __future__ import annotations

import json
from pathlib import Path

import webdataset as wds

CORRUPT_KEY = "000000001"
"""The second sample of the first shard: its image is cut to 40 bytes."""


def write_web_shards(toy_root: Path, out: Path, shards: int = 2, per_shard: int = 4) -> list[Path]:
    """``out/00000.tar`` ... with ``per_shard`` samples each; returns the paths."""
    records = json.loads((toy_root / "coco" / "annotations" / "coco_karpathy_test.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(shards):
        path = out / f"{shard:05d}.tar"
        with wds.TarWriter(str(path)) as writer:
            for position in range(per_shard):
                index = shard * per_shard + position
                key = f"{shard:05d}{position:04d}"
                record = records[index]
                caption = records[(index + 7) % len(records)]["caption"][0] if index % 3 == 2 else record["caption"][0]
                image = (toy_root / "coco" / "images" / record["image"]).read_bytes()
                if key == CORRUPT_KEY:
                    image = image[:40]
                meta = {"caption": caption, "url": f"https://example.com/{key}.jpg", "key": key, "status": "success"}
                writer.write({"__key__": key, "jpg": image, "txt": caption, "json": meta})
        paths.append(path)
    return paths
