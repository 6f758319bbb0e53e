"""Official BLIP checkpoints: the key layout loads into the transformers modules with identical
outputs, ``harness convert`` round-trips, and bad files are refused with a message naming them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.errors import ModelLoadError, OutputError
from harness.specs import ModelRequest
from harness_plugins.blip.catalog import CAPTION, HEADS, NLVR2, RETRIEVAL, VQA
from harness_plugins.blip.heads.vqa import answer_scores
from harness_plugins.blip.loading.checkpoint import load_official, read_checkpoint
from harness_plugins.blip.loading.convert import convert_checkpoint
from harness_plugins.blip.loading.loader import LoadedBlip, load_blip
from harness_plugins.blip.presets import MODEL_CLASSES
from harness_plugins.blip.tiny import random_tiny
from harness_plugins.common.weights import DIRECTORY, OFFICIAL, WeightsSource

SIZE = 64
TEXT_PREFIX = {RETRIEVAL: "text_encoder.", VQA: "text_encoder.", NLVR2: "text_encoder.", CAPTION: "text_decoder.bert."}

# transformers' BlipVisionModel names -> BLIP's timm-style ViT names, written here independently of
# the plugin's renaming so that the round trip checks it.
TO_OFFICIAL_VISION = (
    (r"embeddings\.class_embedding", "cls_token"),
    (r"embeddings\.position_embedding", "pos_embed"),
    (r"embeddings\.patch_embedding\.", "patch_embed.proj."),
    (r"encoder\.layers\.(\d+)\.layer_norm1\.", r"blocks.\1.norm1."),
    (r"encoder\.layers\.(\d+)\.layer_norm2\.", r"blocks.\1.norm2."),
    (r"encoder\.layers\.(\d+)\.self_attn\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"encoder\.layers\.(\d+)\.self_attn\.projection\.", r"blocks.\1.attn.proj."),
    (r"encoder\.layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
    (r"post_layernorm\.", "norm."),
)


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    official = {}
    for key, tensor in state.items():
        if not key.startswith("vision_model."):
            official[key] = tensor.clone()
            continue
        rest = key.removeprefix("vision_model.")
        for pattern, replacement in TO_OFFICIAL_VISION:
            renamed, count = re.subn("^" + pattern, replacement, rest)
            if count:
                official[f"visual_encoder.{renamed}"] = tensor.clone()
                break
        else:
            raise AssertionError(f"no official name for {key}")
    return official


def with_training_state(official: dict[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    """What BLIP's saved models also hold: momentum copies, ITC queues, temperature, position_ids."""
    state = dict(official)
    if head == RETRIEVAL:
        for key, tensor in official.items():
            top, _, rest = key.partition(".")
            state[f"{top}_m.{rest}"] = tensor + 1.0
        state |= {
            "image_queue": torch.randn(64, 16), "text_queue": torch.randn(64, 16),
            "idx_queue": torch.zeros(1, 16, dtype=torch.long), "ptr_queue": torch.zeros(1, dtype=torch.long),
            "temp": torch.tensor(0.07),
        }
    state[f"{TEXT_PREFIX[head]}embeddings.position_ids"] = torch.arange(512)[None]
    return state


def save_official(directory: Path, head: str, seed: int = 3, extra: dict | None = None) -> tuple[LoadedBlip, Path]:
    original = random_tiny(head, SIZE, seed=seed)
    state = with_training_state(to_official(original.module.state_dict()), head) | (extra or {})
    path = directory / f"model_tiny_{head}.pth"
    torch.save({"model": state, "epoch": 4, "config": {"image_size": SIZE}}, path)
    return original, path


def head_outputs(loaded: LoadedBlip, head: str, image_size: int = SIZE) -> list[torch.Tensor]:
    """Every head's outputs on fixed inputs, through the model objects the harness builds."""
    task = {RETRIEVAL: "coco_retrieval", CAPTION: "coco_captioning", VQA: "vqav2", NLVR2: "nlvr2"}[head]
    model = MODEL_CLASSES[head](loaded, ModelRequest(task=task, protocol={"image_size": image_size}), image_size)
    pixels = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    visual = model.encode_images(pixels)
    outputs = [visual.tokens]
    if head == RETRIEVAL:
        texts = model.encode_texts(["a red circle", "two blue squares at the top"])
        outputs += [visual.embeds, texts.embeds, model.match(visual, texts, torch.tensor([[0, 1], [1, 0], [1, 1]]))]
    elif head == CAPTION:
        ids = torch.tensor([[model.module.config.text_config.bos_token_id, 5, 9, 11]] * 2)
        with torch.inference_mode():
            outputs.append(model.module.text_decoder(input_ids=ids, encoder_hidden_states=visual.tokens).logits)
    elif head == VQA:
        with torch.inference_mode():
            states, mask = model.encode_questions(visual, ["what colour is it", "how many"])
            answer_ids, answer_mask = model.answer_tokens(["red", "two shapes"])
            outputs += [states, answer_scores(model.module.text_decoder, states, mask, answer_ids, answer_mask,
                                              torch.tensor([[0, 1], [1, 0]]), model.tokenizer.pad_token_id, 0.1)]
    else:
        outputs.append(model.verify(visual, model.encode_images(pixels.flip(0)), ["a red circle", "two of them"]))
    return outputs


def assert_same_outputs(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("head", HEADS)
def test_official_layout_loads_with_the_original_outputs(tmp_path: Path, head: str) -> None:
    original, path = save_official(tmp_path, head)
    module, tokenizer = load_official(path, head, SIZE)
    loaded_state = module.state_dict()
    for key, tensor in original.module.state_dict().items():
        assert torch.equal(loaded_state[key], tensor), key
    assert module.vision_model.config.layer_norm_eps == 1e-6
    loaded = LoadedBlip(module, tokenizer, str(path), [path])
    assert_same_outputs(head_outputs(loaded, head), head_outputs(original, head))


def test_official_nlvr2_keeps_its_merge_layers(tmp_path: Path) -> None:
    original, path = save_official(tmp_path, NLVR2)
    state = read_checkpoint(path)
    assert "text_encoder.encoder.layer.1.crossattention.output.merge_layer.weight" in state
    assert "text_encoder.encoder.layer.0.crossattention.self1.query.weight" in state
    module, _ = load_official(path, NLVR2, SIZE)
    assert module.config.merge_layer == original.module.config.merge_layer == 1


def test_position_embeddings_are_resized_bicubically(tmp_path: Path) -> None:
    original, path = save_official(tmp_path, RETRIEVAL)
    module, _ = load_official(path, RETRIEVAL, 96)
    saved = original.module.vision_model.embeddings.position_embedding.detach()
    grid = saved[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    expected = torch.cat([saved[:, :1], expected.permute(0, 2, 3, 1).reshape(1, 36, -1)], dim=1)
    torch.testing.assert_close(module.vision_model.embeddings.position_embedding.detach(), expected)
    pixels = torch.randn(1, 3, 96, 96)
    assert module.vision_model(pixel_values=pixels).last_hidden_state.shape == (1, 37, 128)


@pytest.mark.parametrize("head", [RETRIEVAL, NLVR2])
def test_convert_writes_a_directory_that_loads_with_the_same_outputs(tmp_path: Path, head: str) -> None:
    original, path = save_official(tmp_path, head)
    out_dir, found = convert_checkpoint(path, tmp_path / "converted")
    assert found == head
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out_dir.iterdir()}
    loaded = load_blip(WeightsSource(DIRECTORY, str(out_dir), out_dir), head, SIZE)
    assert loaded.weights_files == [out_dir / "model.safetensors"]
    assert_same_outputs(head_outputs(loaded, head), head_outputs(original, head))


def test_convert_refuses_a_non_empty_output_directory(tmp_path: Path) -> None:
    _, path = save_official(tmp_path, CAPTION)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an empty directory"):
        convert_checkpoint(path, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_harness_convert_cli_round_trips(tmp_path: Path) -> None:
    original, path = save_official(tmp_path, VQA)
    out_dir = tmp_path / "vqa_hf"
    run = subprocess.run(
        [sys.executable, "-m", "harness", "convert", str(path), str(out_dir)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert "vqa checkpoint" in run.stdout and str(out_dir) in run.stdout
    loaded = load_blip(WeightsSource(DIRECTORY, str(out_dir), out_dir), VQA, SIZE)
    assert_same_outputs(head_outputs(loaded, VQA), head_outputs(original, VQA))



def test_harness_convert_reports_errors_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert f"error: {tmp_path / 'missing.pth'}: no such checkpoint file" in capsys.readouterr().err


def test_a_corrupted_file_is_refused_naming_it(tmp_path: Path) -> None:
    _, path = save_official(tmp_path, RETRIEVAL)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    noise = tmp_path / "noise.pth"
    noise.write_bytes(os.urandom(4096))
    for bad in (truncated, noise):
        with pytest.raises(ModelLoadError, match=re.escape(str(bad))):
            load_official(bad, RETRIEVAL, SIZE)


class _WritesAFile:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_carrying_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model_base_retrieval_coco.pth"
    torch.save({"model": {"visual_encoder.cls_token": torch.zeros(1, 1, 8)}, "hook": _WritesAFile(marker)}, path)
    with pytest.raises(ModelLoadError, match=r"refused.*Python code") as error:
        load_official(path, RETRIEVAL, SIZE)
    assert str(path) in str(error.value)
    assert not marker.exists()
    # The payload is real: an unrestricted unpickler runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_checkpoint_of_another_head_is_refused(tmp_path: Path) -> None:
    _, caption_path = save_official(tmp_path, CAPTION)
    with pytest.raises(ModelLoadError, match="a BLIP caption checkpoint, but this task needs a retrieval checkpoint"):
        load_official(caption_path, RETRIEVAL, SIZE)
    converted, _ = convert_checkpoint(caption_path, tmp_path / "caption_hf")
    with pytest.raises(ModelLoadError, match="a BLIP caption model, but this task needs a vqa model"):
        load_blip(WeightsSource(DIRECTORY, str(converted), converted), VQA, SIZE)


def test_non_blip_and_pretraining_checkpoints_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ModelLoadError, match="not a BLIP checkpoint.*conv1"):
        load_official(other, RETRIEVAL, SIZE)
    pretrain = tmp_path / "model_base.pth"
    keys = ("visual_encoder.cls_token", "text_encoder.x", "text_decoder.x", "itm_head.weight")
    torch.save({"model": {key: torch.zeros(1) for key in keys}}, pretrain)
    with pytest.raises(ModelLoadError, match="pre-training checkpoint"):
        load_official(pretrain, RETRIEVAL, SIZE)


def test_missing_unexpected_and_unknown_keys_are_named(tmp_path: Path) -> None:
    _, path = save_official(tmp_path, RETRIEVAL, extra={"text_encoder.encoder.layer.0.adapter.weight": torch.zeros(2)})
    with pytest.raises(ModelLoadError, match=r"unexpected keys text_encoder\.encoder\.layer\.0\.adapter\.weight"):
        load_official(path, RETRIEVAL, SIZE)

    state = torch.load(path, weights_only=True)["model"]
    del state["text_encoder.encoder.layer.0.adapter.weight"], state["itm_head.bias"]
    torch.save({"model": state}, path)
    with pytest.raises(ModelLoadError, match=r"missing keys itm_head\.bias"):
        load_official(path, RETRIEVAL, SIZE)

    state["itm_head.bias"] = torch.zeros(2)
    state["visual_encoder.blocks.0.ls1.gamma"] = torch.zeros(128)
    torch.save({"model": state}, path)
    with pytest.raises(ModelLoadError, match=r"unknown BLIP ViT keys visual_encoder\.blocks\.0\.ls1\.gamma"):
        load_official(path, RETRIEVAL, SIZE)


def test_load_blip_records_the_file_it_read(tmp_path: Path) -> None:
    _, path = save_official(tmp_path, CAPTION)
    loaded = load_blip(WeightsSource(OFFICIAL, "my-caption.pth", path), CAPTION, SIZE)
    assert loaded.weights_name == "my-caption.pth"
    assert loaded.weights_files == [path]
