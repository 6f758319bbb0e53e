"""The CLIP baseline plugin: preprocessing, normalised ITC embeddings, video pooling, offline
loading, and the registry refusing CLIP for tasks that need heads CLIP does not have."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import harness_tasks.specs as task_specs
from harness.capabilities import CAPABILITIES
from harness.errors import CapabilityError, ModelLoadError
from harness.registry import Registry, make_plugin_manager
from harness.specs import ModelRequest
from harness_plugins.clip import plugin as clip_plugin
from harness_plugins.clip.model import build_clip
from harness_plugins.clip.preprocess import CLIP_MEAN, CLIP_STD, clip_preprocess
from harness_plugins.clip.tiny import WHOLE_WORDS, tiny_clip_model, tiny_clip_tokenizer


@pytest.fixture(scope="module")
def registry() -> Registry:
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(clip_plugin)
    pm.register(task_specs)
    return Registry(pm)


def request(protocol: dict, weights: str | None = None) -> ModelRequest:
    return ModelRequest(task="coco_retrieval", protocol=protocol, weights=weights)


@pytest.fixture(scope="module")
def tiny(registry):
    return registry.model("clip-tiny").build(request({"image_size": 64, "max_text_tokens": 35}))


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(80, 50), (50, 90), (64, 64), (120, 70)]
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:count]
    ]


def test_tiny_implements_only_contrastive_capabilities(tiny):
    provided = {name for name, protocol in CAPABILITIES.items() if isinstance(tiny, protocol)}
    assert provided == set(clip_plugin.CAPABILITIES)
    assert tiny.image_size == 64


def test_preprocess_resizes_shorter_side_and_center_crops():
    # Shorter side already 64: no resize, so the crop must be the exact central pixels.
    array = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pixels = clip_preprocess([Image.fromarray(array)], 64)
    assert pixels.shape == (1, 3, 64, 64)
    expected = (torch.from_numpy(array[:, 16:80].astype(np.float32) / 255).permute(2, 0, 1)
                - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(pixels[0], expected)


def test_preprocess_scales_a_portrait_image_by_its_width():
    # A 32x100 portrait: width -> 64 and height -> 200, then the central 64 rows. A top half
    # black and bottom half white must give a black-to-white split in the crop's middle.
    array = np.zeros((100, 32, 3), dtype=np.uint8)
    array[50:] = 255
    pixels = clip_preprocess([Image.fromarray(array)], 64)
    red = pixels[0, 0] * CLIP_STD[0] + CLIP_MEAN[0]
    assert red[:28].max() < 0.02 and red[36:].min() > 0.98


def test_images_encode_to_distinct_normalised_embeddings(tiny):
    pixels = tiny.preprocess(random_images(4))
    visual = tiny.encode_images(pixels)
    assert visual.embeds.shape == (4, 16)
    assert visual.tokens.shape == (4, 1 + (64 // 16) ** 2, 32)
    torch.testing.assert_close(visual.embeds.norm(dim=-1), torch.ones(4))
    similarity = visual.embeds @ visual.embeds.T
    assert (similarity - torch.eye(4)).abs().max() > 1e-3


def test_texts_encode_to_normalised_embeddings_independent_of_padding(tiny):
    texts = ["a dog", "a picture of a red circle on the left", "Zebra café!"]
    features = tiny.encode_texts(texts)
    assert features.embeds.shape == (3, 16)
    torch.testing.assert_close(features.embeds.norm(dim=-1), torch.ones(3))
    assert features.input_ids.shape == features.attention_mask.shape
    assert features.attention_mask[0].sum() < features.attention_mask[1].sum()
    alone = tiny.encode_texts(["a dog"])
    torch.testing.assert_close(alone.embeds[0], features.embeds[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(features.embeds[0], features.embeds[1], atol=1e-3)


def test_texts_are_truncated_to_the_protocol_length(registry):
    short = registry.model("clip-tiny").build(request({"image_size": 64, "max_text_tokens": 5}))
    features = short.encode_texts(["a picture of a red circle on the left"])
    assert features.input_ids.shape[1] == 5
    assert features.input_ids[0, -1] == short.tokenizer.eos_token_id


def test_video_of_identical_frames_equals_the_image(tiny):
    pixels = tiny.preprocess(random_images(2))
    images = tiny.encode_images(pixels)
    frames = pixels.unsqueeze(1).repeat(1, 3, 1, 1, 1)
    video = tiny.encode_videos(frames)
    torch.testing.assert_close(video.embeds, images.embeds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(video.tokens, images.tokens.repeat(1, 3, 1))


def test_video_embedding_is_the_renormalised_mean_of_its_frames(tiny):
    pixels = tiny.preprocess(random_images(4))
    frames = tiny.encode_images(pixels).embeds
    video = tiny.encode_videos(pixels.view(2, 2, 3, 64, 64))
    expected = torch.nn.functional.normalize(frames.view(2, 2, -1).mean(1), dim=-1)
    torch.testing.assert_close(video.embeds, expected, rtol=1e-5, atol=1e-6)


def test_tiny_tokenizer_keeps_its_words_whole_and_reads_any_text():
    tokenizer = tiny_clip_tokenizer()
    assert all(len(tokenizer(word, add_special_tokens=False).input_ids) == 1 for word in WHOLE_WORDS)
    ids = tokenizer("Ünïcode ✓").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.eos_token_id == len(tokenizer) - 1


def test_tiny_weights_are_fixed(tiny):
    torch.manual_seed(123)
    again = tiny_clip_model(tiny_clip_tokenizer())
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, tiny.model.state_dict()[name]), name


def test_registry_refuses_clip_for_heads_it_lacks(registry):
    clip = registry.model("clip")
    with pytest.raises(CapabilityError, match="model 'clip' cannot run 'nlvr2': it lacks PairVerifier"):
        registry.check_fit(clip, registry.task("nlvr2"))
    with pytest.raises(CapabilityError, match="Captioner"):
        registry.check_fit(clip, registry.task("coco_captioning"))
    with pytest.raises(CapabilityError, match="DialogAnswerRanker"):
        registry.check_fit(clip, registry.task("visdial"))
    registry.check_fit(clip, registry.task("coco_retrieval"))
    registry.check_fit(clip, registry.task("msrvtt_retrieval"))


def test_missing_weights_name_the_id():
    with pytest.raises(ModelLoadError, match="'no-such-org/no-such-clip'.*never downloads"):
        build_clip(request({"image_size": 224}, weights="no-such-org/no-such-clip"))


def test_loads_a_local_folder_and_records_its_files(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = build_clip(request({"image_size": 64, "max_text_tokens": 35}, weights=str(tmp_path)))
    assert loaded.weights_name == str(tmp_path)
    assert [f.name for f in loaded.weights_files] == ["model.safetensors"]
    texts = ["a cat on the right"]
    torch.testing.assert_close(loaded.encode_texts(texts).embeds, tiny.encode_texts(texts).embeds)
    pixels = tiny.preprocess(random_images(2))
    torch.testing.assert_close(loaded.encode_images(pixels).embeds, tiny.encode_images(pixels).embeds)


def test_plugin_module_imports_no_torch():
    code = "import sys, harness_plugins.clip.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_bf16_returns_float32_embeddings_close_to_fp32(registry, tiny):
    half = registry.model("clip-tiny").build(
        ModelRequest(task="coco_retrieval", protocol={"image_size": 64}, precision="bf16")
    )
    pixels = tiny.preprocess(random_images(2))
    embeds = half.encode_images(pixels).embeds
    assert embeds.dtype == torch.float32
    torch.testing.assert_close(embeds, tiny.encode_images(pixels).embeds, rtol=0, atol=0.05)
    assert half.encode_texts(["a red star"]).embeds.dtype == torch.float32
