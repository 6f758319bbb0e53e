"""The on-disk feature cache: a second run encodes nothing and gives the same results; anything
the features depend on (weights file content, image size, precision, image content, frame
settings) makes a miss; a damaged entry is encoded again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from media_files import write_image, write_mp4

from harness.cache import FeatureCache, open_feature_cache
from harness.config import RunConfig
from harness.context import RunContext
from harness.predictions import PredictionStore
from harness.runner import Runner
from harness.specs import ModelRequest
from harness_plugins.blip.heads.base import BlipModel
from harness_plugins.blip.presets import build_blip_tiny
from harness_tasks.images import encoded_samples
from harness_tasks.retrieval import CaptionedImage
from harness_tasks.video import encoded_videos


class Calls:
    """Counts the images a model's real ``encode_images`` is asked to encode."""

    def __init__(self, model: object) -> None:
        self.images = 0
        encode = model.encode_images

        def counted(pixels: torch.Tensor):
            self.images += len(pixels)
            return encode(pixels)

        model.encode_images = counted


def tiny(image_size: int = 32, precision: str = "fp32"):
    return build_blip_tiny(
        ModelRequest(task="coco_retrieval", protocol={"image_size": image_size}, precision=precision, seed=0)
    )


def context(tmp_path: Path, cache: Path | None, precision: str = "fp32", **protocol) -> RunContext:
    """What the runner hands a task; its precision is the model's, as in a run."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return RunContext(
        protocol=protocol, predictions=PredictionStore(run_dir), batch_size=2, precision=precision,
        feature_cache=None if cache is None else FeatureCache(cache),
    )


def encode_all(model, samples, ctx) -> dict[str, torch.Tensor]:
    """Tokens of every sample's image, by sample id."""
    tokens = {}
    for ready, gather in encoded_samples(model, samples, ctx):
        for sample, row in zip(ready, gather(ready)[0].tokens, strict=True):
            tokens[sample.sample_id] = row
    return tokens


@pytest.fixture
def images(tmp_path: Path) -> list[CaptionedImage]:
    paths = [write_image(tmp_path / "img" / f"{i}.png", colour=(40 * i, 200 - 30 * i, 90), size=20, fmt="PNG") for i in range(5)]
    return [CaptionedImage(f"s{i}", (path,), ("a caption",)) for i, path in enumerate(paths)]


def test_cached_features_equal_fresh_ones_and_skip_the_encoder(tmp_path, images) -> None:
    cache = tmp_path / "cache"
    model = tiny()
    calls = Calls(model)
    fresh = encode_all(model, images, context(tmp_path, cache))
    assert calls.images == 5

    again = encode_all(model, images, context(tmp_path, cache))
    assert calls.images == 5, "every image should come from the cache"
    assert fresh.keys() == again.keys()
    assert all(torch.equal(fresh[sid], again[sid]) for sid in fresh)

    no_cache = encode_all(model, images, context(tmp_path, None))
    assert calls.images == 10
    assert all(torch.equal(fresh[sid], no_cache[sid]) for sid in fresh)


def test_a_renamed_image_hits_and_an_edited_one_misses(tmp_path, images) -> None:
    cache = tmp_path / "cache"
    model = tiny()
    calls = Calls(model)
    encode_all(model, images, context(tmp_path, cache))
    renamed = tmp_path / "elsewhere" / "renamed.png"
    renamed.parent.mkdir()
    shutil.copy(images[0].images[0], renamed)
    write_image(images[1].images[0], colour=(1, 2, 3), size=20, fmt="PNG")
    calls.images = 0
    encode_all(model, [CaptionedImage("copy", (renamed,), ("x",)), *images[1:]], context(tmp_path, cache))
    assert calls.images == 1


def test_other_weights_image_size_or_precision_miss(tmp_path, images) -> None:
    cache = tmp_path / "cache"
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"first weights")
    model = tiny()
    model.weights_files = [weights]
    calls = Calls(model)
    encode_all(model, images, context(tmp_path, cache))
    encode_all(model, images, context(tmp_path, cache))
    assert calls.images == 5

    weights.write_bytes(b"other weights")
    encode_all(model, images, context(tmp_path, cache))
    assert calls.images == 10, "a weights file with other content must not reuse the features"

    for other in (tiny(image_size=48), tiny(precision="bf16")):
        other.weights_files = [weights]
        other_calls = Calls(other)
        encode_all(other, images, context(tmp_path, cache, precision=other.precision))
        assert other_calls.images == 5

    keys = sorted(json.loads(path.read_text())["image_size"] for path in cache.glob("*/key.json"))
    assert keys == [32, 32, 32, 48]


def test_a_damaged_entry_is_encoded_again(tmp_path, images) -> None:
    cache = tmp_path / "cache"
    model = tiny()
    calls = Calls(model)
    fresh = encode_all(model, images, context(tmp_path, cache))
    entry = next(cache.glob("*/*/*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:40])
    again = encode_all(model, images, context(tmp_path, cache))
    assert calls.images == 6
    # The re-encoded image went through the ViT in a batch of one, hence allclose.
    assert all(torch.allclose(fresh[sid], again[sid], atol=1e-5) for sid in fresh)


def test_video_features_are_keyed_by_frame_settings(tmp_path) -> None:
    videos = [write_mp4(tmp_path / "videos" / f"v{i}.mp4", num_frames=12 + i) for i in range(3)]
    cache = tmp_path / "cache"
    model = tiny()
    calls = Calls(model)

    def tokens(num_frames: int) -> list[torch.Tensor]:
        ctx = context(tmp_path, cache, num_frames=num_frames, frame_sampling="strided", frame_resize="decord",
                      image_size=model.image_size)
        return [visual.tokens for _, visual, _ in encoded_videos(model, videos, ctx)]

    first = tokens(4)
    assert calls.images == 3 * 4
    assert all(torch.equal(a, b) for a, b in zip(first, tokens(4), strict=True))
    assert calls.images == 3 * 4
    tokens(2)
    assert calls.images == 3 * 4 + 3 * 2


def test_auto_is_under_the_harness_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert open_feature_cache("auto").root == tmp_path / "features"
    assert open_feature_cache(str(tmp_path / "x")).root == tmp_path / "x"
    assert open_feature_cache(None) is None


def test_a_second_run_encodes_nothing_and_gives_identical_results(tmp_path, toy_root, monkeypatch) -> None:
    encoded = []
    encode = BlipModel.encode_images

    def counted(self, pixels):
        encoded.append(len(pixels))
        return encode(self, pixels)

    monkeypatch.setattr(BlipModel, "encode_images", counted)

    def run(output: str) -> dict:
        config = RunConfig(
            model="blip-tiny", tasks="coco_retrieval", data_root=str(toy_root), output=str(tmp_path / output),
            quiet=True, feature_cache=str(tmp_path / "features"),
        )
        (record,) = Runner(config, report=lambda line: None).run()
        return record

    first = run("first")
    assert sum(encoded) == first["samples"]["evaluated"] > 0
    encoded.clear()
    second = run("second")
    assert encoded == []
    assert second["metrics"] == first["metrics"]
    assert second["timings"]["stages"]["load_cached_features"]["items"] == first["samples"]["evaluated"]
    run_dirs = [next((tmp_path / name).iterdir()) for name in ("first", "second")]
    predictions = [(run_dir / "predictions.jsonl").read_text() for run_dir in run_dirs]
    assert predictions[0] == predictions[1]
