"""BLIP's NLVR2 twin cross-attention: the module against a step-by-step computation from its own
parameters, asymmetry in the two images, and loading BLIP's official key layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import BlipTextConfig, BlipVisionConfig

from harness.errors import ModelLoadError
from harness_plugins.blip.heads.nlvr2 import BlipNLVR2Model, load_nlvr2, save_nlvr2
from harness_plugins.blip.loading.checkpoint import read_checkpoint, to_transformers_layout
from harness_plugins.blip.loading.resolution import set_image_size
from harness_plugins.blip.loading.state_dicts import load_state_strict

LAYERS = 4
MERGE_LAYER = 2  # layers 0-1 average the branches, layers 2-3 merge them


def tiny_configs() -> tuple[BlipVisionConfig, BlipTextConfig]:
    vision = BlipVisionConfig(
        hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=16, layer_norm_eps=1e-6, initializer_range=0.02,
    )
    text = BlipTextConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
        num_attention_heads=4, max_position_embeddings=16, encoder_hidden_size=24,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, sep_token_id=2,
    )
    return vision, text


def load_official_nlvr2(path, vision, text, merge_layer):
    """BLIP's released file through the plugin's shared official-checkpoint path."""
    model = BlipNLVR2Model(vision, text, merge_layer=merge_layer)
    load_state_strict(model, to_transformers_layout(read_checkpoint(path), str(path)), str(path))
    return model.eval()


def build_model(merge_layer: int = MERGE_LAYER, seed: int = 0) -> BlipNLVR2Model:
    torch.manual_seed(seed)
    vision, text = tiny_configs()
    return BlipNLVR2Model(vision, text, merge_layer=merge_layer).eval()


@pytest.fixture(scope="module")
def model() -> BlipNLVR2Model:
    return build_model()


@pytest.fixture(scope="module")
def inputs(model: BlipNLVR2Model) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(6, 3, 32, 32, generator=generator)
    with torch.inference_mode():
        tokens = model.vision_model(pixels).last_hidden_state
    left, right = tokens[:3], tokens[3:]
    input_ids = torch.randint(3, 40, (3, 7), generator=generator)
    input_ids[:, 0] = 1  # the [ENC] position
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 4:] = 0  # a padded statement
    input_ids[1, 4:] = 0
    return left, right, input_ids, attention_mask


def reference_logits(
    model: BlipNLVR2Model,
    left: torch.Tensor,
    right: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    merge_layer: int,
) -> torch.Tensor:
    """BLIP's NLVR2 forward written out with plain tensor operations on the module's weights."""
    config = model.config.text_config
    params = model.state_dict()
    heads, hidden = config.num_attention_heads, config.hidden_size
    head_dim = hidden // heads

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ params[f"{name}.weight"].T + params[f"{name}.bias"]

    def layer_norm(x: torch.Tensor, name: str) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + config.layer_norm_eps) * params[f"{name}.weight"] + params[f"{name}.bias"]

    def attend(queries: torch.Tensor, keys_from: torch.Tensor, name: str, key_mask=None) -> torch.Tensor:
        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], x.shape[1], heads, head_dim).transpose(1, 2)

        q = split(linear(queries, f"{name}.query"))
        k = split(linear(keys_from, f"{name}.key"))
        v = split(linear(keys_from, f"{name}.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        context = scores.softmax(-1) @ v
        return context.transpose(1, 2).reshape(queries.shape[0], queries.shape[1], hidden)

    prefix = "text_encoder"
    length = input_ids.shape[1]
    x = params[f"{prefix}.embeddings.word_embeddings.weight"][input_ids]
    x = x + params[f"{prefix}.embeddings.position_embeddings.weight"][:length]
    x = layer_norm(x, f"{prefix}.embeddings.LayerNorm")
    for index in range(config.num_hidden_layers):
        layer = f"{prefix}.encoder.layer.{index}"
        self_attention = attend(x, x, f"{layer}.attention.self", attention_mask.bool())
        x = layer_norm(linear(self_attention, f"{layer}.attention.output.dense") + x, f"{layer}.attention.output.LayerNorm")

        branch_left = linear(attend(x, left, f"{layer}.crossattention.self0"), f"{layer}.crossattention.output.dense0")
        branch_right = linear(attend(x, right, f"{layer}.crossattention.self1"), f"{layer}.crossattention.output.dense1")
        if index < merge_layer:
            combined = (branch_left + branch_right) / 2
        else:
            combined = linear(torch.cat([branch_left, branch_right], -1), f"{layer}.crossattention.output.merge_layer")
        x = layer_norm(combined + x, f"{layer}.crossattention.output.LayerNorm")

        intermediate = F.gelu(linear(x, f"{layer}.intermediate.dense"))
        x = layer_norm(linear(intermediate, f"{layer}.output.dense") + x, f"{layer}.output.LayerNorm")
    first_token = x[:, 0]
    return linear(torch.relu(linear(first_token, "cls_head.0")), "cls_head.2")


def to_official_key(key: str) -> str:
    """This module's key -> BLIP's released layout, written independently of the loader's table."""
    if not key.startswith("vision_model."):
        return key
    name = key.removeprefix("vision_model.")
    for ours, theirs in (
        ("embeddings.class_embedding", "cls_token"),
        ("embeddings.position_embedding", "pos_embed"),
        ("embeddings.patch_embedding", "patch_embed.proj"),
        ("encoder.layers.", "blocks."),
        ("layer_norm1", "norm1"),
        ("layer_norm2", "norm2"),
        ("self_attn.projection", "attn.proj"),
        ("self_attn.qkv", "attn.qkv"),
        ("post_layernorm", "norm"),
    ):
        name = name.replace(ours, theirs)
    return f"visual_encoder.{name}"


def official_state_dict(model: BlipNLVR2Model) -> dict[str, torch.Tensor]:
    state = {to_official_key(key): tensor.clone() for key, tensor in model.state_dict().items()}
    # Older transformers saved this buffer inside BLIP's checkpoints.
    state["text_encoder.embeddings.position_ids"] = torch.arange(16).unsqueeze(0)
    return state


def test_forward_equals_step_by_step_twin_attention(model, inputs):
    with torch.inference_mode():
        logits = model(*inputs)
        expected = reference_logits(model, *inputs, merge_layer=MERGE_LAYER)
    assert logits.shape == (3, 2)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_both_combination_paths_matter(model, inputs):
    """The reference is sensitive to where merging starts (averaging a layer that should merge
    changes the logits), so the equality above checks the boundary, not just one path."""
    with torch.inference_mode():
        logits = model(*inputs)
        for wrong_threshold in (MERGE_LAYER + 1, LAYERS):
            wrong = reference_logits(model, *inputs, merge_layer=wrong_threshold)
            assert (logits - wrong).abs().max() > 1e-3


def test_swapping_images_changes_logits(model, inputs):
    left, right, input_ids, attention_mask = inputs
    with torch.inference_mode():
        straight = model(left, right, input_ids, attention_mask)
        swapped = model(right, left, input_ids, attention_mask)
    assert (straight - swapped).abs().max() > 1e-3


def test_official_keys_have_blip_names(model):
    keys = set(official_state_dict(model))
    assert "text_encoder.encoder.layer.0.crossattention.self0.query.weight" in keys
    assert "text_encoder.encoder.layer.0.crossattention.self1.value.bias" in keys
    assert "text_encoder.encoder.layer.0.crossattention.output.dense1.weight" in keys
    assert "text_encoder.encoder.layer.0.crossattention.output.LayerNorm.weight" in keys
    assert "text_encoder.encoder.layer.1.crossattention.output.merge_layer.weight" not in keys
    assert "text_encoder.encoder.layer.2.crossattention.output.merge_layer.weight" in keys
    assert model.state_dict()["text_encoder.encoder.layer.2.crossattention.output.merge_layer.weight"].shape == (32, 64)
    assert {"cls_head.0.weight", "cls_head.2.bias", "visual_encoder.cls_token", "visual_encoder.pos_embed"} <= keys
    assert "visual_encoder.blocks.1.attn.qkv.weight" in keys
    assert "visual_encoder.norm.bias" in keys


def test_official_checkpoint_loads_with_identical_outputs(model, inputs, tmp_path):
    path = tmp_path / "model_base_nlvr.pth"
    torch.save({"model": official_state_dict(model), "epoch": 9}, path)
    vision, text = tiny_configs()
    loaded = load_official_nlvr2(path, vision, text, merge_layer=MERGE_LAYER)
    left, right, input_ids, attention_mask = inputs
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        assert torch.equal(loaded.vision_model(pixels).last_hidden_state, model.vision_model(pixels).last_hidden_state)
        assert torch.equal(loaded(left, right, input_ids, attention_mask), model(left, right, input_ids, attention_mask))


def test_official_checkpoint_missing_and_unexpected_keys_are_named(model, tmp_path):
    state = official_state_dict(model)
    del state["cls_head.2.bias"]
    # A retrieval checkpoint has single-branch cross-attention; it must not half-load.
    state["text_encoder.encoder.layer.0.crossattention.self.query.weight"] = torch.zeros(32, 32)
    path = tmp_path / "broken.pth"
    torch.save({"model": state}, path)
    vision, text = tiny_configs()
    with pytest.raises(ModelLoadError) as error:
        load_official_nlvr2(path, vision, text, merge_layer=MERGE_LAYER)
    message = str(error.value)
    assert str(path) in message
    assert "missing keys cls_head.2.bias" in message
    assert "unexpected keys text_encoder.encoder.layer.0.crossattention.self.query.weight" in message


def test_merge_threshold_mismatch_is_refused(model, tmp_path):
    path = tmp_path / "model_base_nlvr.pth"
    torch.save({"model": official_state_dict(model)}, path)
    vision, text = tiny_configs()
    with pytest.raises(ModelLoadError, match=r"unexpected keys text_encoder\.encoder\.layer\.2\.crossattention\.output\.merge_layer"):
        load_official_nlvr2(path, vision, text, merge_layer=3)


def test_unknown_official_keys_are_named(model, tmp_path):
    state = official_state_dict(model)
    state["visual_encoder.head.weight"] = torch.zeros(2, 24)
    with pytest.raises(ModelLoadError, match=r"unknown BLIP ViT keys visual_encoder\.head\.weight"):
        to_transformers_layout(state, "model_base_nlvr.pth")
    del state["visual_encoder.head.weight"]
    state["itm_head.weight"] = torch.zeros(2, 32)
    path = tmp_path / "model_base_nlvr.pth"
    torch.save({"model": state}, path)
    vision, text = tiny_configs()
    with pytest.raises(ModelLoadError, match=r"unexpected keys itm_head\.weight"):
        load_official_nlvr2(path, vision, text, merge_layer=MERGE_LAYER)


def test_save_and_load_round_trip(model, inputs, tmp_path):
    folder = save_nlvr2(model, tmp_path / "nlvr2")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    loaded = load_nlvr2(folder)
    assert loaded.config.merge_layer == MERGE_LAYER
    assert not loaded.training
    with torch.inference_mode():
        assert torch.equal(loaded(*inputs), model(*inputs))


def test_save_keeps_a_resolution_changed_after_construction(tmp_path):
    """Conversion resizes the ViT to the protocol's resolution before saving; the saved config
    must describe the saved position embeddings."""
    resized = build_model()
    set_image_size(resized.vision_model, 48)
    loaded = load_nlvr2(save_nlvr2(resized, tmp_path / "nlvr2-48"))
    assert loaded.config.vision_config.image_size == 48
    pixels = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(loaded.vision_model(pixels).last_hidden_state, resized.vision_model(pixels).last_hidden_state)


def test_load_names_the_missing_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="lacks model.safetensors"):
        load_nlvr2(tmp_path)


def test_merge_layer_outside_the_encoder_is_refused():
    vision, text = tiny_configs()
    with pytest.raises(ValueError, match="merge_layer 5"):
        BlipNLVR2Model(vision, text, merge_layer=5)
