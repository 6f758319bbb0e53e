"""A small web-style image-text collection with planted noise, for CapFilt and its filter task.

Web alt-texts are noisy: some describe their image, some belong to another image, some get one
detail wrong, and many are boilerplate ("image", "IMG_2034.jpg", "click here"). Each toy image
gets exactly one such text, drawn from a fixed mix (``sizes.WEB_NOISE``), and its ground truth is
written beside it, so a filter's decisions can be scored. The same pairs are written twice:

- ``web/web_pretrain.json``: BLIP's pre-training annotation format, a JSON list of
  ``{"image": path, "caption": text}`` (paths relative to the file's folder, ``images/...``);
- ``web/shards/{00000,00001,...}.tar``: webdataset shards as img2dataset writes them, one
  ``KEY.jpg``, ``KEY.txt`` (the text) and ``KEY.json`` (img2dataset's metadata) per image;
- ``web/web_labels.json``: per image its path, shard key, ``label`` (1: the text describes the
  image) and ``noise`` (``clean``, ``wrong``, ``partial`` or ``boilerplate``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import tarfile
from functools import partial
from pathlib import Path

from harness.toy.captions import scene_captions
from harness.toy.draw import render
from harness.toy.karpathy import PALETTE
from harness.toy.output import save_image, stream, write_json
from harness.toy.scenes import CANVAS, Scene, captionable_scene, unique
from harness.toy.sizes import WEB_IMAGES, WEB_NOISE, WEB_SHARD_SIZE
from harness.toy.vocab import COMMON_COLOURS, COMMON_SHAPES

BOILERPLATE: tuple[str, ...] = (
    "image",
    "click here",
    "stock photo",
    "photo",
    "untitled",
    "thumbnail",
    "click to enlarge",
    "no description available",
    "IMG_{number}.jpg",
    "DSC_{number}.JPG",
)
"""Alt-texts that say nothing about the picture; ``{number}`` becomes a four-digit number."""


def partially_wrong(scene: Scene, rng: random.Random) -> Scene:
    """The scene with one attribute changed: the colour or the shape of its first object (of all
    objects in a group, whose objects are identical), so a caption of it is wrong in one detail."""
    attribute = rng.choice(("colour", "shape"))
    current = getattr(scene.objects[0], attribute)
    choices = [value for value in (COMMON_COLOURS if attribute == "colour" else COMMON_SHAPES) if value != current]
    changed = {attribute: rng.choice(choices)}
    touched = len(scene.objects) if scene.kind == "group" else 1
    objects = tuple(
        dataclasses.replace(obj, **changed) if number < touched else obj for number, obj in enumerate(scene.objects)
    )
    return dataclasses.replace(scene, objects=objects)


def noise_plan(rng: random.Random, n: int) -> list[str]:
    """The noise kind of each of ``n`` images: ``WEB_NOISE`` shares, rounded, shuffled."""
    kinds = [kind for kind, share in WEB_NOISE.items() if kind != "clean" for _ in range(round(share * n))]
    kinds += ["clean"] * (n - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _web_text(kind: str, number: int, scenes: list[Scene], rng: random.Random) -> str:
    scene = scenes[number]
    if kind == "clean":
        return scene_captions(scene, rng, 1)[0]
    if kind == "wrong":
        other = rng.choice([i for i in range(len(scenes)) if i != number])
        return scene_captions(scenes[other], rng, 1)[0]
    if kind == "partial":
        return scene_captions(partially_wrong(scene, rng), rng, 1)[0]
    return rng.choice(BOILERPLATE).format(number=rng.randint(1000, 9999))


def shard_key(number: int) -> str:
    """img2dataset's key: the shard number (5 digits) then the position in the shard (4 digits)."""
    shard, position = divmod(number, WEB_SHARD_SIZE)
    return f"{shard:05d}{position:04d}"


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # fixed, so a shard is byte-identical for a seed
    tar.addfile(info, io.BytesIO(data))


def build_web(root: Path, seed: int) -> None:
    """web/images/web_NNNN.jpg, web/web_pretrain.json, web/web_labels.json, web/shards/NNNNN.tar."""
    scenes = unique(partial(captionable_scene, stream(seed, "web", "scenes"), PALETTE), WEB_IMAGES)
    kinds = noise_plan(stream(seed, "web", "noise"), WEB_IMAGES)
    rng = stream(seed, "web", "texts")
    pretrain, labels = [], []
    shards: dict[int, list[tuple[str, bytes, str, dict]]] = {}
    for number, (scene, kind) in enumerate(zip(scenes, kinds, strict=True)):
        relative = f"images/web_{number:04d}.jpg"
        save_image(render(scene), root / relative)
        text = _web_text(kind, number, scenes, rng)
        key = shard_key(number)
        jpeg = (root / relative).read_bytes()
        pretrain.append({"image": relative, "caption": text})
        labels.append({"image": relative, "key": key, "label": int(kind == "clean"), "noise": kind})
        meta = {
            "url": f"https://toy.invalid/web/{number:04d}.jpg",
            "caption": text,
            "key": key,
            "status": "success",
            "error_message": None,
            "width": CANVAS,
            "height": CANVAS,
            "original_width": CANVAS,
            "original_height": CANVAS,
            "sha256": hashlib.sha256(jpeg).hexdigest(),
        }
        shards.setdefault(number // WEB_SHARD_SIZE, []).append((key, jpeg, text, meta))
    write_json(root / "web_pretrain.json", pretrain)
    write_json(root / "web_labels.json", labels)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    for shard, members in shards.items():
        with tarfile.open(root / "shards" / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, jpeg, text, meta in members:
                _add_member(tar, f"{key}.jpg", jpeg)
                _add_member(tar, f"{key}.txt", text.encode("utf-8"))
                _add_member(tar, f"{key}.json", json.dumps(meta, separators=(",", ":")).encode("utf-8"))
