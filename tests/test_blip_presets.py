"""The BLIP presets: registration without torch, per-task weights, offline resolution of hub ids,
errors that say what to download, ``blip-tiny`` for every task, BLIP-faithful configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BlipConfig

from harness.errors import ConfigError, ModelLoadError
from harness.registry import Registry, check_instance, make_plugin_manager
from harness.specs import ModelRequest
from harness_plugins.blip import plugin, tiny
from harness_plugins.blip.catalog import CAPTION, NLVR2, RETRIEVAL
from harness_plugins.blip.loading.loader import make_blip_faithful
from harness_plugins.blip.presets import build_blip, build_blip_large, build_blip_tiny
from harness_plugins.blip.tiny import random_tiny
from harness_plugins.common.weights import DIRECTORY, OFFICIAL, WEIGHTS_DIR_ENV, resolve_weights
from harness_tasks.specs import TASK_SPECS

SIZE = 64


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding nothing, whatever the machine's real cache holds."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def save_directory(directory: Path, head: str, seed: int, layer_norm_eps: float | None = None) -> None:
    loaded = random_tiny(head, SIZE, seed=seed)
    if layer_norm_eps is not None:
        loaded.module.config.vision_config.layer_norm_eps = layer_norm_eps
    if head == NLVR2:
        from harness_plugins.blip.heads.nlvr2 import save_nlvr2

        save_nlvr2(loaded.module, directory)
    else:
        loaded.module.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_plugin_registers_three_presets_without_importing_torch() -> None:
    manager = make_plugin_manager(load_entry_points=False)
    manager.register(plugin)
    registry = Registry(manager).collect()
    assert list(registry.models) == ["blip", "blip-large", "blip-tiny"]
    assert registry.models["blip-tiny"].protocol_overrides == {"image_size": 64}
    for spec in TASK_SPECS:
        registry.check_fit(registry.models["blip"], spec)
    probe = "import sys, harness_plugins.blip.plugin; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_each_task_gets_blips_checkpoint_for_it() -> None:
    base = {spec.name: spec for spec in plugin.MODEL_SPECS}["blip"].default_weights
    assert base["coco_retrieval"] == "Salesforce/blip-itm-base-coco"
    assert base["flickr30k_retrieval"] == "Salesforce/blip-itm-base-flickr"
    for task in ("flickr30k_retrieval_zeroshot", "msrvtt_retrieval", "visdial"):
        assert base[task] == "Salesforce/blip-itm-base-coco"
    assert base["coco_captioning"] == base["nocaps"] == "Salesforce/blip-image-captioning-base"
    assert base["vqav2"] == base["msrvtt_qa"] == base["msvd_qa"] == "Salesforce/blip-vqa-base"
    assert base["nlvr2"] == "model_base_nlvr.pth"
    large = {spec.name: spec for spec in plugin.MODEL_SPECS}["blip-large"].default_weights
    assert large["coco_retrieval"] == "Salesforce/blip-itm-large-coco"
    assert large["vqav2"] == "Salesforce/blip-vqa-capfilt-large"
    assert {spec.name for spec in TASK_SPECS} == set(base)


@pytest.mark.parametrize("spec", TASK_SPECS, ids=lambda spec: spec.name)
def test_blip_tiny_runs_every_task_with_its_capabilities(spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny, "TINY_WEIGHTS_DIR", tmp_path)  # no shipped weights: random init from the seed
    request = ModelRequest(task=spec.name, protocol={**spec.protocol, "image_size": SIZE}, seed=3)
    model = build_blip_tiny(request)
    check_instance(model, "blip-tiny", spec)
    assert model.weights_name == "blip-tiny-seed3" and model.weights_files == []
    assert same_weights(model.module, build_blip_tiny(request).module)
    assert not same_weights(model.module, build_blip_tiny(ModelRequest(task=spec.name, protocol=request.protocol, seed=4)).module)


def test_blip_tiny_prefers_shipped_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_directory(tmp_path / CAPTION, CAPTION, seed=11)
    monkeypatch.setattr(tiny, "TINY_WEIGHTS_DIR", tmp_path)
    model = build_blip_tiny(ModelRequest(task="nocaps", protocol={"image_size": SIZE}))
    assert model.weights_name == f"blip-tiny/{CAPTION}"
    assert model.weights_files == [tmp_path / CAPTION / "model.safetensors"]
    assert same_weights(model.module, random_tiny(CAPTION, SIZE, seed=11).module)
    assert build_blip_tiny(ModelRequest(task="vqav2", protocol={"image_size": SIZE})).weights_name == "blip-tiny-seed0"


def test_a_cached_hub_id_loads_offline(empty_hub_cache: Path) -> None:
    snapshot = empty_hub_cache / "models--Salesforce--blip-itm-base-coco" / "snapshots" / "0123abcd"
    save_directory(snapshot, RETRIEVAL, seed=12, layer_norm_eps=1e-5)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    model = build_blip(ModelRequest(task="msrvtt_retrieval", protocol={"image_size": 96}))
    assert model.weights_name == "Salesforce/blip-itm-base-coco"
    assert model.weights_files == [snapshot / "model.safetensors"]
    assert model.module.vision_model.config.image_size == 96
    assert model.module.vision_model.config.layer_norm_eps == 1e-6
    assert any("layer_norm_eps" in note for note in model.notes)
    assert model.encode_images(torch.zeros(1, 3, 96, 96)).tokens.shape == (1, 37, 128)


@pytest.mark.parametrize(
    ("task", "expected"),
    [("coco_retrieval", "Salesforce/blip-itm-base-coco"), ("flickr30k_retrieval", "Salesforce/blip-itm-base-flickr"),
     ("nocaps", "Salesforce/blip-image-captioning-base"), ("msvd_qa", "Salesforce/blip-vqa-base")],
)
def test_missing_hub_weights_name_the_id_and_how_to_get_it(empty_hub_cache: Path, task: str, expected: str) -> None:
    with pytest.raises(ModelLoadError, match=rf"'{expected}' is not in the local cache.*hf download {expected}"):
        build_blip(ModelRequest(task=task, protocol={"image_size": 384}))


def test_missing_official_nlvr2_checkpoint_names_the_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=rf"model_base_nlvr\.pth.*\${WEIGHTS_DIR_ENV} \(now {tmp_path}\)"):
        build_blip(ModelRequest(task="nlvr2", protocol={"image_size": 384}))
    with pytest.raises(ModelLoadError, match="no checkpoint of this size for 'nlvr2'; pass --weights"):
        build_blip_large(ModelRequest(task="nlvr2", protocol={"image_size": 384}))


def test_weights_resolve_to_a_directory_a_file_or_the_weights_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model_base_nlvr.pth").write_bytes(b"")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert resolve_weights("model_base_nlvr.pth").path == tmp_path / "model_base_nlvr.pth"
    assert resolve_weights(str(tmp_path / "model_base_nlvr.pth")).kind == OFFICIAL
    assert resolve_weights(str(tmp_path)).kind == DIRECTORY
    with pytest.raises(ModelLoadError, match="neither an existing directory or file nor a Hugging Face id"):
        resolve_weights("not a name")


def test_weights_of_another_head_are_refused_by_the_preset(tmp_path: Path) -> None:
    save_directory(tmp_path / "nlvr", NLVR2, seed=1)
    with pytest.raises(ModelLoadError, match="a BLIP nlvr2 model, but this task needs a retrieval model"):
        build_blip_tiny(ModelRequest(task="coco_retrieval", protocol={"image_size": SIZE}, weights=str(tmp_path / "nlvr")))
    model = build_blip_tiny(ModelRequest(task="nlvr2", protocol={"image_size": SIZE}, weights=str(tmp_path / "nlvr")))
    assert model.weights_files == [tmp_path / "nlvr" / "model.safetensors"]


def test_hub_configs_are_corrected_to_blips_numerics() -> None:
    config = BlipConfig()  # transformers' defaults, as in the hub configs: ViT eps 1e-5, 8 text heads
    notes = make_blip_faithful(config)
    assert config.vision_config.layer_norm_eps == 1e-6 and config.text_config.num_attention_heads == 12
    assert len(notes) == 2
    assert make_blip_faithful(config) == []


def test_unknown_tasks_are_refused() -> None:
    with pytest.raises(ConfigError, match="BLIP has no head for task 'counting'"):
        build_blip_tiny(ModelRequest(task="counting", protocol={"image_size": SIZE}))
