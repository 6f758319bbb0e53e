"""The toy web split: one text per image with planted noise, as BLIP pre-training JSON, as
img2dataset-style webdataset shards, and a ground-truth label file that agrees with both."""

from __future__ import annotations

import collections
import json
import random
import re
from pathlib import Path

import pytest
import webdataset as wds

from harness.toy import suite as suite_module
from harness.toy.captions import scene_captions
from harness.toy.scenes import Palette, captionable_scene
from harness.toy.sizes import WEB_IMAGES, WEB_NOISE, WEB_SHARD_SIZE
from harness.toy.web import BOILERPLATE, partially_wrong


@pytest.fixture(scope="module")
def web(toy_root: Path) -> Path:
    return toy_root / "web"


def test_pretrain_json_and_labels_agree_and_plant_the_noise_mix(web: Path) -> None:
    pretrain = json.loads((web / "web_pretrain.json").read_text())
    labels = json.loads((web / "web_labels.json").read_text())
    assert len(pretrain) == len(labels) == WEB_IMAGES
    assert all(set(record) == {"image", "caption"} for record in pretrain)
    assert [r["image"] for r in pretrain] == [label["image"] for label in labels]
    assert all((web / r["image"]).is_file() for r in pretrain)
    counts = collections.Counter(label["noise"] for label in labels)
    assert counts == {kind: round(share * WEB_IMAGES) for kind, share in WEB_NOISE.items()}
    assert all(label["label"] == int(label["noise"] == "clean") for label in labels)
    texts = collections.defaultdict(list)
    for record, label in zip(pretrain, labels, strict=True):
        texts[label["noise"]].append(record["caption"])
    boilerplate = re.compile("|".join(re.escape(t).replace(re.escape("{number}"), r"\d{4}") for t in BOILERPLATE))
    assert all(boilerplate.fullmatch(text) for text in texts["boilerplate"])
    assert not any(boilerplate.fullmatch(text) for text in texts["clean"] + texts["wrong"] + texts["partial"])


def test_shards_are_img2dataset_style_and_read_back_with_webdataset(web: Path) -> None:
    shards = sorted((web / "shards").glob("*.tar"))
    assert [s.name for s in shards] == [f"{i:05d}.tar" for i in range(WEB_IMAGES // WEB_SHARD_SIZE)]
    samples = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False))
    labels = json.loads((web / "web_labels.json").read_text())
    pretrain = json.loads((web / "web_pretrain.json").read_text())
    assert [s["__key__"] for s in samples] == [label["key"] for label in labels]
    assert labels[WEB_SHARD_SIZE]["key"] == "000010000"  # shard 1, position 0
    for sample, label, record in zip(samples, labels, pretrain, strict=True):
        assert sample["jpg"] == (web / label["image"]).read_bytes()
        assert sample["txt"].decode() == record["caption"]
        meta = json.loads(sample["json"])
        assert meta["key"] == label["key"] and meta["caption"] == record["caption"] and meta["status"] == "success"


def test_a_partially_wrong_scene_differs_in_exactly_one_attribute() -> None:
    rng = random.Random(3)
    for _ in range(50):
        scene = captionable_scene(rng, Palette())
        changed = partially_wrong(scene, rng)
        assert changed.signature() != scene.signature()
        first, new = scene.objects[0], changed.objects[0]
        assert (first.colour != new.colour) + (first.shape != new.shape) == 1
        assert scene_captions(changed, random.Random(0), 1)[0] not in scene_captions(scene, random.Random(0), 5)


def test_a_suite_cached_before_a_data_set_was_added_counts_as_incomplete(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "x.txt").write_text("old")

    def write_manifest(datasets: list[str]) -> None:
        manifest = {"version": suite_module.TOY_VERSION, "seed": 0, "datasets": datasets, "files": {"x.txt": "-"}}
        (suite / suite_module.MANIFEST).write_text(json.dumps(manifest))

    write_manifest([name for name in suite_module.BUILDERS if name != "web"])
    assert not suite_module._is_complete(suite, 0)
    write_manifest(list(suite_module.BUILDERS))
    assert suite_module._is_complete(suite, 0)
