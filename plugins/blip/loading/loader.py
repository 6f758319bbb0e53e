"""Load BLIP weights of one head from any source into a module, its tokenizer and its provenance.

Three sources: a Hugging Face directory (a hub snapshot or a folder written by ``harness convert``
or ``save_pretrained``), an official BLIP ``.pth``, or nothing (the tiny model's seeded random
init, see ``tiny.py``). Whatever the source, the result runs at the protocol's resolution and with
BLIP's own numerics (ViT LayerNorm eps 1e-6), and every key mismatch is an error naming the keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import ModelLoadError
from harness.weights_check import check_loading_info, check_safetensors, one_line, quiet_transformers
from harness_plugins.blip.catalog import NLVR2
from harness_plugins.blip.heads import nlvr2
from harness_plugins.blip.loading.checkpoint import (
    BLIP_VISION_LAYER_NORM_EPS,
    HEAD_DIM,
    HF_CLASSES,
    load_official,
)
from harness_plugins.blip.loading.resolution import set_image_size
from harness_plugins.blip.loading.tokenizer import (
    check_fits,
    has_tokenizer,
    load_tokenizer,
    tokenizer_for_vocab,
)
from harness_plugins.common.weights import DIRECTORY, HUB, OFFICIAL, WeightsSource, weight_files

_BERT_BASE_WIDTH = 768


@dataclass
class LoadedBlip:
    """A loaded head: ``module`` (eval mode, CPU, fp32), its tokenizer, what to record as the
    weights' identity, and any configuration corrections made for parity with BLIP."""

    module: nn.Module
    tokenizer: Any
    weights_name: str
    weights_files: list[Path]
    notes: list[str] = field(default_factory=list)


def load_blip(source: WeightsSource, head: str, image_size: int, tokenizer: Any | None = None) -> LoadedBlip:
    """Load ``source`` as a ``head`` model at ``image_size``. ``tokenizer`` is used for official
    checkpoints (they carry none); by default it is chosen from the checkpoint's vocabulary size."""
    if source.kind == OFFICIAL:
        module, tokenizer = load_official(source.path, head, image_size, tokenizer)
        loaded = LoadedBlip(module, tokenizer, source.name, [source.path])
    elif source.kind in (HUB, DIRECTORY):
        loaded = _load_directory(source, head, image_size)
    else:
        raise ModelLoadError(f"unknown weights source {source.kind!r} for {source.name}")
    text = loaded.module.config.text_config
    check_fits(loaded.tokenizer, text.vocab_size, text.bos_token_id, source.name)
    return loaded


def directory_head(directory: Path) -> str:
    """The head a Hugging Face directory holds, from its ``config.json``."""
    config_path = directory / "config.json"
    try:
        data = json.loads(config_path.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{directory}: no config.json; not a Hugging Face model directory") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{config_path}: expected a JSON object (a model configuration), found a JSON {type(data).__name__}")
    if data.get("architecture") == nlvr2.ARCHITECTURE:
        return NLVR2
    names = data.get("architectures") or []
    for head, class_name in HF_CLASSES.items():
        if class_name in names:
            return head
    raise ModelLoadError(
        f"{config_path}: architectures {names} is no BLIP head this harness runs "
        f"(expected one of {', '.join(HF_CLASSES.values())} or {nlvr2.ARCHITECTURE})"
    )


def _load_directory(source: WeightsSource, head: str, image_size: int) -> LoadedBlip:
    directory = source.path
    found = directory_head(directory)
    if found != head:
        raise ModelLoadError(f"{source.name}: a BLIP {found} model, but this task needs a {head} model")
    notes: list[str] = []
    if head == NLVR2:
        module = nlvr2.load_nlvr2(directory)
        files = [directory / nlvr2.WEIGHTS_FILE]
    else:
        module = _from_pretrained(directory, head, source.name, notes)
        files = weight_files(directory)
    set_image_size(module.vision_model, image_size)
    vocab_size = module.config.text_config.vocab_size
    tokenizer = load_tokenizer(directory) if has_tokenizer(directory) else tokenizer_for_vocab(vocab_size)
    return LoadedBlip(module.eval(), tokenizer, source.name, files, notes)


def _from_pretrained(directory: Path, head: str, name: str, notes: list[str]) -> nn.Module:
    import transformers
    from huggingface_hub.errors import StrictDataclassError

    model_class = getattr(transformers, HF_CLASSES[head])
    try:
        config = transformers.BlipConfig.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError, StrictDataclassError) as exc:
        raise ModelLoadError(f"{directory}/config.json: not a BLIP configuration ({one_line(exc)})") from exc
    notes.extend(make_blip_faithful(config))
    files = [file for file in weight_files(directory) if file.suffix == ".safetensors"]
    check_safetensors(model_class, config, files, name)
    try:
        with quiet_transformers():
            module, info = model_class.from_pretrained(
                str(directory), config=config, local_files_only=True, dtype=torch.float32, output_loading_info=True
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{name}: cannot load {model_class.__name__} from {directory} ({one_line(exc)})") from exc
    check_loading_info(info, name, model_class.__name__)
    return module



def make_blip_faithful(config: Any) -> list[str]:
    """Align a Hugging Face BLIP config with BLIP's own models where transformers' defaults differ:
    the ViT's LayerNorm eps (BLIP 1e-6; transformers' default and, as reported in LAVIS issue 106,
    the hub configs: 1e-5) and, for a BERT-base text module, 12 heads of 64 dimensions
    (transformers' default is 8). Returns a note per change so a run can say what it adjusted."""
    notes = []
    vision, text = config.vision_config, config.text_config
    if vision.layer_norm_eps != BLIP_VISION_LAYER_NORM_EPS:
        notes.append(f"vision layer_norm_eps {vision.layer_norm_eps} -> {BLIP_VISION_LAYER_NORM_EPS} (BLIP's ViT)")
        vision.layer_norm_eps = BLIP_VISION_LAYER_NORM_EPS
    heads = text.hidden_size // HEAD_DIM
    if text.hidden_size == _BERT_BASE_WIDTH and text.num_attention_heads != heads:
        notes.append(f"text num_attention_heads {text.num_attention_heads} -> {heads} (BLIP's BERT-base)")
        text.num_attention_heads = heads
    return notes

