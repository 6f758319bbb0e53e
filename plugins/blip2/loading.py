"""Load BLIP-2 weights of one head from a Hugging Face directory (a hub snapshot in the local
cache, or a saved folder), with its tokenizer and provenance.

Where the weights are is resolved by ``common.weights.resolve_weights``, as for BLIP (the harness never
downloads; a missing checkpoint fails naming the exact id to fetch). BLIP-2 has no official
checkpoint format to convert: LAVIS's ``.pth`` files are refused with the hub id to use instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from harness.errors import ModelLoadError
from harness_plugins.blip2.catalog import HF_CLASSES
from harness_plugins.common.checked_loading import from_pretrained_checked
from harness_plugins.common.weights import OFFICIAL, WeightsSource, weight_files


@dataclass
class LoadedBlip2:
    """A loaded head: ``module`` (eval mode, CPU, fp32), the tokenizer its text goes through (the
    Q-Former's BERT tokenizer for retrieval, the language model's for generation), what to record
    as the weights' identity, and notes on anything adjusted."""

    module: nn.Module
    tokenizer: Any
    weights_name: str
    weights_files: list[Path]
    notes: list[str] = field(default_factory=list)


def directory_head(directory: Path) -> str:
    """The head a Hugging Face directory holds, from its ``config.json``."""
    config_path = directory / "config.json"
    try:
        names = json.loads(config_path.read_text()).get("architectures") or []
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{directory}: no config.json; not a Hugging Face model directory") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise ModelLoadError(f"{config_path}: not a JSON object ({exc})") from exc
    for head, class_name in HF_CLASSES.items():
        if class_name in names:
            return head
    raise ModelLoadError(
        f"{config_path}: architectures {names} is no BLIP-2 head this harness runs "
        f"(expected one of {', '.join(HF_CLASSES.values())})"
    )


def load_blip2(source: WeightsSource, head: str) -> LoadedBlip2:
    """Load ``source`` as a BLIP-2 ``head`` model with the tokenizer saved beside it."""
    if source.kind == OFFICIAL:
        raise ModelLoadError(
            f"{source.name}: BLIP-2 loads Hugging Face directories only (LAVIS's .pth files are not converted); "
            f"use the hub checkpoints (`harness list models` names them)"
        )
    directory = source.path
    found = directory_head(directory)
    if found != head:
        raise ModelLoadError(f"{source.name}: a BLIP-2 {found} model, but this task needs a {head} model")
    module = _from_pretrained(directory, head, source.name)
    tokenizer = _load_tokenizer(directory)
    return LoadedBlip2(module.eval(), tokenizer, source.name, weight_files(directory))


def _from_pretrained(directory: Path, head: str, name: str) -> nn.Module:
    import transformers

    return from_pretrained_checked(getattr(transformers, HF_CLASSES[head]), directory, name)


def _load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{directory}: cannot load its tokenizer ({exc})") from exc
