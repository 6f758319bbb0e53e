"""The toy suite: layout, record formats, media that decode, determinism, atomic caching."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import decord
import pytest
from PIL import Image

from harness.errors import OutputError
from harness.toy import TOY_VERSION, build_toy_suite, ensure_toy_suite
from harness.toy import suite as suite_module
from harness.toy.sizes import (
    COCO_IMAGES,
    FLICKR_IMAGES,
    MSRVTT_VIDEOS,
    MSVD_VIDEOS,
    NLVR2_PAIRS,
    NOCAPS_IMAGES_PER_DOMAIN,
    VIDEO_FRAMES,
    VIDEO_QA_PER_VIDEO,
    VISDIAL_DIALOGS,
    VQA_IMAGES,
    VQA_QUESTIONS_PER_IMAGE,
)
from harness.toy.vocab import COLOUR_WORDS, SHAPE_WORDS

REPO = Path(__file__).resolve().parents[1]

EXPECTED_ANNOTATIONS = [
    "coco/annotations/coco_karpathy_train.json",
    "coco/annotations/coco_karpathy_val.json",
    "coco/annotations/coco_karpathy_test.json",
    "coco/annotations/coco_karpathy_val_gt.json",
    "coco/annotations/coco_karpathy_test_gt.json",
    "flickr30k/annotations/flickr30k_train.json",
    "flickr30k/annotations/flickr30k_val.json",
    "flickr30k/annotations/flickr30k_test.json",
    "nocaps/annotations/nocaps_val.json",
    "nocaps/annotations/nocaps_val_4500_captions.json",
    "vqav2/annotations/vqa_train.json",
    "vqav2/annotations/vqa_val.json",
    "vqav2/annotations/vqa_test.json",
    "vqav2/annotations/answer_list.json",
    "nlvr2/annotations/nlvr_train.json",
    "nlvr2/annotations/nlvr_dev.json",
    "nlvr2/annotations/nlvr_test.json",
    "visdial/annotations/visdial_1.0_train.json",
    "visdial/annotations/visdial_1.0_val.json",
    "visdial/annotations/visdial_1.0_val_dense_annotations.json",
    "msrvtt/annotations/msrvtt_train.jsonl",
    "msrvtt/annotations/msrvtt_test.jsonl",
    "msrvtt/annotations/msrvtt_qa_train.json",
    "msrvtt/annotations/msrvtt_qa_test.json",
    "msrvtt/annotations/msrvtt_qa_answer_list.json",
    "msvd/annotations/msvd_qa_train.json",
    "msvd/annotations/msvd_qa_test.json",
    "msvd/annotations/msvd_qa_answer_list.json",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("toy") / "suite"
    start = time.perf_counter()
    build_toy_suite(out, seed=0)
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def suite(built: tuple[Path, float]) -> Path:
    return built[0]


def load(suite: Path, rel: str):
    path = suite / rel
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(path.read_text())


def check_image(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        image.load()
        assert image.size == (64, 64), path
        assert image.mode == "RGB", path


def check_video(path: Path) -> None:
    assert path.is_file(), path
    reader = decord.VideoReader(str(path))
    assert len(reader) == VIDEO_FRAMES, path
    assert reader[len(reader) - 1].shape == (64, 64, 3)


def normalise(answer: str) -> str:
    """Just enough of the VQA answer normalisation for the toy answers: articles, number words."""
    words = [w for w in answer.split() if w not in ("a", "an", "the")]
    numbers = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
    return " ".join(numbers.get(w, w) for w in words)


def mentions_scene(caption: str) -> bool:
    """Every toy caption names a colour and a shape."""
    colours = {w for words in COLOUR_WORDS.values() for w in words}
    shapes = {w for pairs in SHAPE_WORDS.values() for pair in pairs for w in pair}
    return any(c in caption.split() for c in colours) and any(s in caption for s in shapes)


# --- building, manifest, determinism -------------------------------------------------------------


def test_build_is_fast(built: tuple[Path, float]) -> None:
    assert built[1] < 20, f"toy suite took {built[1]:.1f}s to build"


def test_manifest_lists_every_file_with_its_hash(suite: Path) -> None:
    manifest = load(suite, "TOY_SUITE.json")
    assert manifest["version"] == TOY_VERSION and manifest["seed"] == 0
    on_disk = {p.relative_to(suite).as_posix() for p in suite.rglob("*") if p.is_file()} - {"TOY_SUITE.json"}
    assert set(manifest["files"]) == on_disk
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((suite / rel).read_bytes()).hexdigest() == digest, rel


def test_every_annotation_file_exists(suite: Path) -> None:
    missing = [rel for rel in EXPECTED_ANNOTATIONS if not (suite / rel).is_file()]
    assert not missing


def test_same_seed_gives_identical_bytes_and_cache_reuses_it(
    suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = ensure_toy_suite(tmp_path / "cache", seed=0)
    assert cached == tmp_path / "cache" / f"toy-v{TOY_VERSION}-seed0"
    first, second = load(suite, "TOY_SUITE.json")["files"], load(cached, "TOY_SUITE.json")["files"]
    assert first == second  # annotations, images and videos alike
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]

    def no_rebuild(*args: object) -> None:
        raise AssertionError("ensure_toy_suite rebuilt a complete suite")

    monkeypatch.setattr(suite_module, "_write_suite", no_rebuild)
    assert ensure_toy_suite(tmp_path / "cache", seed=0) == cached
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert ensure_toy_suite(seed=0) == cached


def test_different_seed_gives_different_data(suite: Path, tmp_path: Path) -> None:
    other = build_toy_suite(tmp_path / "seed1", seed=1)
    a, b = load(suite, "TOY_SUITE.json")["files"], load(other, "TOY_SUITE.json")["files"]
    for rel in EXPECTED_ANNOTATIONS:
        if not rel.endswith("answer_list.json"):  # the answer vocabulary is the same for every seed
            assert a[rel] != b[rel], rel
    images = [rel for rel in a if rel.endswith(".png")]  # NLVR2 file names do not depend on the seed
    assert images and all(a[rel] != b.get(rel) for rel in images)


def fake_write_suite(root: Path, seed: int, progress: bool = False, pause: float = 0.0) -> None:
    """A stand-in builder (one file and a manifest) for tests of the build/rename logic."""
    time.sleep(pause)
    (root / "x.txt").write_text(str(seed))
    manifest = {"version": TOY_VERSION, "seed": seed, "datasets": list(suite_module.BUILDERS), "files": {"x.txt": "-"}}
    (root / "TOY_SUITE.json").write_text(json.dumps(manifest))


def test_ensure_rebuilds_an_incomplete_cached_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite_module, "_write_suite", fake_write_suite)
    target = tmp_path / f"toy-v{TOY_VERSION}-seed0"
    target.mkdir()
    (target / "leftover.txt").write_text("half a suite")
    assert ensure_toy_suite(tmp_path, seed=0) == target
    assert sorted(p.name for p in target.iterdir()) == ["TOY_SUITE.json", "x.txt"]
    (target / "x.txt").unlink()  # a listed file went missing: rebuild
    assert ensure_toy_suite(tmp_path, seed=0) == target and (target / "x.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_concurrent_ensure_calls_share_one_complete_suite(tmp_path: Path) -> None:
    """Two processes build at the same time (the pause makes them overlap); both get the winner's."""
    code = (
        "import functools, sys, test_toy\n"
        "from harness.toy import suite\n"
        "suite._write_suite = functools.partial(test_toy.fake_write_suite, pause=1.0)\n"
        "print(suite.ensure_toy_suite(sys.argv[1], seed=3))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    target = tmp_path / f"toy-v{TOY_VERSION}-seed3"
    assert outputs == {str(target)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert sorted(p.name for p in target.iterdir()) == ["TOY_SUITE.json", "x.txt"]


def test_refuses_a_non_empty_directory_that_is_not_a_suite(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        build_toy_suite(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_rebuilds_over_an_existing_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite_module, "_write_suite", fake_write_suite)
    out = tmp_path / "suite"
    build_toy_suite(out, seed=1)
    build_toy_suite(out, seed=2)
    assert (out / "x.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite"]


def test_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(root: Path, seed: int, progress: bool) -> None:
        (root / "half.txt").write_text("")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(suite_module, "_write_suite", broken)
    with pytest.raises(RuntimeError):
        build_toy_suite(tmp_path / "suite")
    assert list(tmp_path.iterdir()) == []


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "prefix", "sizes"),
    [("coco", "coco_karpathy", COCO_IMAGES), ("flickr30k", "flickr30k", FLICKR_IMAGES)],
)
def test_karpathy_files(suite: Path, dataset: str, prefix: str, sizes: dict[str, int]) -> None:
    train = load(suite, f"{dataset}/annotations/{prefix}_train.json")
    assert all(set(r) == {"image", "caption", "image_id"} for r in train)
    assert all(isinstance(r["caption"], str) and isinstance(r["image_id"], str) for r in train)
    per_image = collections.Counter(r["image"] for r in train)
    assert len(per_image) == sizes["train"] and set(per_image.values()) == {5}
    assert len({r["image_id"] for r in train}) == sizes["train"]
    for split in ("val", "test"):
        records = load(suite, f"{dataset}/annotations/{prefix}_{split}.json")
        assert len(records) == sizes[split]
        for r in records:
            assert set(r) == {"image", "caption"}
            assert len(r["caption"]) == 5 and len(set(r["caption"])) == 5
            assert all(c == c.lower() and mentions_scene(c) for c in r["caption"])
    for image in {r["image"] for r in train} | {
        r["image"] for s in ("val", "test") for r in load(suite, f"{dataset}/annotations/{prefix}_{s}.json")
    }:
        check_image(suite / dataset / "images" / image)


def test_coco_file_names_and_gt_files(suite: Path) -> None:
    train = load(suite, "coco/annotations/coco_karpathy_train.json")
    folders = collections.Counter(r["image"].split("/")[0] for r in train)
    assert set(folders) == {"train2014", "val2014"}  # restval images live in val2014, as in COCO
    for r in train:
        folder, name = r["image"].split("/")
        assert name == f"COCO_{folder}_{int(r['image_id'].removeprefix('coco_')):012d}.jpg"
    for split in ("val", "test"):
        records = load(suite, f"coco/annotations/coco_karpathy_{split}.json")
        gt = load(suite, f"coco/annotations/coco_karpathy_{split}_gt.json")
        ids = [int(Path(r["image"]).stem.split("_")[-1]) for r in records]
        assert [im["id"] for im in gt["images"]] == ids
        by_id = collections.defaultdict(list)
        for ann in gt["annotations"]:
            assert set(ann) == {"image_id", "caption", "id"} and isinstance(ann["image_id"], int)
            by_id[ann["image_id"]].append(ann["caption"])
        assert {i: by_id[i] for i in ids} == {i: r["caption"] for i, r in zip(ids, records, strict=True)}
        assert len({ann["id"] for ann in gt["annotations"]}) == len(gt["annotations"])


def test_eval_captions_single_out_one_image(suite: Path) -> None:
    for rel in [
        "coco/annotations/coco_karpathy_val.json",
        "coco/annotations/coco_karpathy_test.json",
        "flickr30k/annotations/flickr30k_test.json",
    ]:
        records = load(suite, rel)
        owner: dict[str, str] = {}
        for r in records:
            for caption in r["caption"]:
                assert owner.setdefault(caption, r["image"]) == r["image"], (rel, caption)
        pixels = {
            hashlib.sha256((suite / rel.split("/")[0] / "images" / r["image"]).read_bytes()).hexdigest()
            for r in records
        }
        assert len(pixels) == len(records)
    coco_val = {c for r in load(suite, "coco/annotations/coco_karpathy_val.json") for c in r["caption"]}
    coco_test = {c for r in load(suite, "coco/annotations/coco_karpathy_test.json") for c in r["caption"]}
    assert not coco_val & coco_test


def test_nocaps_files(suite: Path) -> None:
    val = load(suite, "nocaps/annotations/nocaps_val.json")
    official = load(suite, "nocaps/annotations/nocaps_val_4500_captions.json")
    assert all(set(r) == {"image", "img_id"} and isinstance(r["img_id"], int) for r in val)
    assert len(val) == 3 * NOCAPS_IMAGES_PER_DOMAIN
    images = {im["id"]: im for im in official["images"]}
    assert {r["img_id"] for r in val} == set(images)
    assert collections.Counter(im["domain"] for im in images.values()) == {
        d: NOCAPS_IMAGES_PER_DOMAIN for d in ("in-domain", "near-domain", "out-domain")
    }
    for r in val:
        assert images[r["img_id"]]["file_name"] == r["image"]
        check_image(suite / "nocaps" / "images" / r["image"])
    captions = collections.defaultdict(list)
    for ann in official["annotations"]:
        assert set(ann) == {"image_id", "id", "caption"}
        captions[ann["image_id"]].append(ann["caption"])
    assert all(len(set(c)) == 10 for c in captions.values()) and len(captions) == len(val)
    all_captions = [c for texts in captions.values() for c in texts]
    assert len(set(all_captions)) == len(all_captions)  # no caption fits two images
    rare = {"pink", "brown", "diamond", "diamonds", "hexagon", "hexagons"}
    for image_id, texts in captions.items():
        uses_rare = any(rare & set(t.split()) for t in texts)
        assert uses_rare == (images[image_id]["domain"] != "in-domain"), texts


def test_vqa_files(suite: Path) -> None:
    answer_list = load(suite, "vqav2/annotations/answer_list.json")
    assert all(isinstance(a, str) for a in answer_list) and len(set(answer_list)) == len(answer_list)
    ids: set[int] = set()
    spellings = set()
    for split, n_images in VQA_IMAGES.items():
        records = load(suite, f"vqav2/annotations/vqa_{split}.json")
        assert len(records) == n_images * VQA_QUESTIONS_PER_IMAGE
        for r in records:
            keys = {"question_id", "question", "image", "dataset"} | (
                {"answer"} if split != "test" else set()
            )
            assert set(r) == keys and isinstance(r["question_id"], int) and r["question"].endswith("?")
            assert r["question_id"] not in ids
            ids.add(r["question_id"])
            if split != "test":
                assert len(r["answer"]) == 10
                top, votes = collections.Counter(map(normalise, r["answer"])).most_common(1)[0]
                assert top in answer_list and votes >= 6
                if r["question"].startswith("how many"):
                    spellings.add(any(a.isalpha() for a in r["answer"]))
        for image in {r["image"] for r in records}:
            check_image(suite / "vqav2" / "images" / image)
    assert spellings == {True, False}  # counts come as digits and as words: normalisation matters
    val = load(suite, "vqav2/annotations/vqa_val.json")
    assert any(len(set(r["answer"])) > 1 for r in val) and any(len(set(r["answer"])) == 1 for r in val)


def test_nlvr2_files(suite: Path) -> None:
    for split, name in (("train", "nlvr_train"), ("dev", "nlvr_dev"), ("test1", "nlvr_test")):
        records = load(suite, f"nlvr2/annotations/{name}.json")
        assert len(records) == NLVR2_PAIRS[split]
        assert collections.Counter(r["label"] for r in records) == {
            "True": len(records) // 2,
            "False": len(records) // 2,
        }
        for r in records:
            assert set(r) == {"images", "sentence", "label"} and len(r["images"]) == 2
            assert all(p.startswith(f"{split}/") and p.endswith(".png") for p in r["images"])
            for image in r["images"]:
                check_image(suite / "nlvr2" / "images" / image)


def test_nlvr2_statements_are_true_of_their_images(suite: Path) -> None:
    """Re-derive the label of every colour statement from the rendered pixels alone."""
    import numpy as np

    from harness.toy.vocab import COLOURS

    def has_colour(path: Path, colour: str) -> bool:
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        near = (np.abs(pixels - np.array(COLOURS[colour])) <= 30).all(axis=2)
        return int(near.sum()) >= 20  # a whole object, not a few anti-aliased edge pixels

    checked = collections.Counter()
    for r in load(suite, "nlvr2/annotations/nlvr_dev.json") + load(suite, "nlvr2/annotations/nlvr_test.json"):
        words = r["sentence"].split()
        if words[-1] != "object":
            continue
        colour = words[-2]
        left, right = (has_colour(suite / "nlvr2" / "images" / p, colour) for p in r["images"])
        if words[0] == "both":
            truth = left and right
        elif words[:2] == ["exactly", "one"]:
            truth = left != right
        elif words[0] == "neither":
            truth = not (left or right)
        else:
            assert words[:2] in (["the", "left"], ["the", "right"]), r
            truth = left if words[1] == "left" else right
        assert str(truth) == r["label"], r
        checked[words[0]] += 1
    assert set(checked) == {"both", "exactly", "neither", "the"}, checked


def test_visdial_files(suite: Path) -> None:
    dense = load(suite, "visdial/annotations/visdial_1.0_val_dense_annotations.json")
    for split, split_name in (("train", "train"), ("val", "val2018")):
        doc = load(suite, f"visdial/annotations/visdial_1.0_{split}.json")
        assert doc["version"] == "1.0" and doc["split"] == split_name
        data = doc["data"]
        questions, answers, dialogs = data["questions"], data["answers"], data["dialogs"]
        assert all(not q.endswith("?") for q in questions)
        assert len(dialogs) == VISDIAL_DIALOGS[split]
        pattern = "COCO_train2014_{:012d}.jpg" if split == "train" else "VisualDialog_val2018_{:012d}.jpg"
        for d in dialogs:
            assert set(d) == {"image_id", "caption", "dialog"} and isinstance(d["image_id"], int)
            check_image(suite / "visdial" / "images" / pattern.format(d["image_id"]))
            assert len(d["dialog"]) == 10
            for rnd in d["dialog"]:
                options = rnd["answer_options"]
                assert len(options) == 100 and len(set(options)) == 100
                assert all(0 <= i < len(answers) for i in options) and 0 <= rnd["question"] < len(questions)
                assert options[rnd["gt_index"]] == rnd["answer"]
            assert len({rnd["question"] for rnd in d["dialog"]}) == 10
        if split == "val":
            assert [a["image_id"] for a in dense] == [d["image_id"] for d in dialogs]
            for ann, d in zip(dense, dialogs, strict=True):
                assert 1 <= ann["round_id"] <= 10
                relevance = ann["gt_relevance"]
                assert len(relevance) == 100 and set(relevance) <= {0.0, 0.5, 1.0}
                rnd = d["dialog"][ann["round_id"] - 1]
                assert relevance[rnd["gt_index"]] == 1.0 and relevance.count(1.0) == 1
                assert relevance.count(0.5) >= 1


def test_msrvtt_retrieval_files(suite: Path) -> None:
    test = load(suite, "msrvtt/annotations/msrvtt_test.jsonl")
    train = load(suite, "msrvtt/annotations/msrvtt_train.jsonl")
    assert all(set(r) == {"clip_name", "caption"} for r in test + train)
    assert len(test) == MSRVTT_VIDEOS["test"] == len({r["clip_name"] for r in test})
    assert len({r["caption"] for r in test}) == len(test)
    assert all(mentions_scene(r["caption"]) for r in test)
    assert set(collections.Counter(r["clip_name"] for r in train).values()) == {3}
    for name in {r["clip_name"] for r in test + train}:
        check_video(suite / "msrvtt" / "videos" / f"{name}.mp4")


@pytest.mark.parametrize(("dataset", "videos"), [("msrvtt", MSRVTT_VIDEOS), ("msvd", MSVD_VIDEOS)])
def test_video_qa_files(suite: Path, dataset: str, videos: dict[str, int]) -> None:
    answer_list = load(suite, f"{dataset}/annotations/{dataset}_qa_answer_list.json")
    ids = set()
    for split, n in videos.items():
        records = load(suite, f"{dataset}/annotations/{dataset}_qa_{split}.json")
        assert len(records) == n * VIDEO_QA_PER_VIDEO[split]
        for r in records:
            assert set(r) == {"question_id", "question", "answer", "video"}
            assert isinstance(r["question_id"], int) and r["question_id"] not in ids
            ids.add(r["question_id"])
            assert r["answer"] in answer_list and r["video"].endswith(".mp4")
        for video in {r["video"] for r in records}:
            check_video(suite / dataset / "videos" / video)
