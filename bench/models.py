"""What the benchmarks share: BLIP models with random weights at the sizes measured, the
machine description printed with every figure, and timing that waits for the GPU.

``base`` is BLIP ViT-B/16 at 384 px with a BERT-base text module (12 heads of 64, as BLIP; not
transformers' default of 8). ``small`` keeps the image and text token counts of base (577 and
35) but narrows and shortens both towers, so that the benchmarks run on a laptop CPU in seconds
while the share of the cross-attention key/value projections in an ITM pair stays as large.
Random weights: speed does not depend on the values, and nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import transformers

from harness.specs import ModelRequest
from harness_plugins.blip.fast.vit import FusedBlipAttention
from harness_plugins.blip.heads.captioning import BlipCaptionModel
from harness_plugins.blip.heads.retrieval import BlipRetrievalModel
from harness_plugins.blip.loading.checkpoint import BLIP_TEXT_LAYER_NORM_EPS, BLIP_VISION_LAYER_NORM_EPS
from harness_plugins.blip.loading.loader import LoadedBlip
from harness_plugins.blip.loading.tokenizer import tiny_tokenizer

IMAGE_SIZE = 384
TEXT_TOKENS = 35
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "base": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
    },
    "small": {
        "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4},
        "text": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4},
    },
}


def blip_config(size: str) -> transformers.BlipConfig:
    shape = SIZES[size]
    vision = {
        **shape["vision"], "image_size": IMAGE_SIZE, "patch_size": 16,
        "layer_norm_eps": BLIP_VISION_LAYER_NORM_EPS, "initializer_range": 0.02,
    }
    text = {
        **shape["text"], "encoder_hidden_size": shape["vision"]["hidden_size"], "vocab_size": 30524,
        "layer_norm_eps": BLIP_TEXT_LAYER_NORM_EPS,
    }
    return transformers.BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=256)


def build(head: str, size: str, device: str, precision: str, seed: int = 0) -> Any:
    """A project model (``retrieval`` or ``caption``) of ``size`` with random weights. The
    tokenizer is the offline tiny one: the benchmarks feed token ids directly, and the only
    words it must know are the captioning prompt's."""
    classes = {
        "retrieval": (transformers.BlipForImageTextRetrieval, BlipRetrievalModel),
        "caption": (transformers.BlipForConditionalGeneration, BlipCaptionModel),
    }
    module_class, model_class = classes[head]
    torch.manual_seed(seed)
    module = module_class(blip_config(size)).eval()
    loaded = LoadedBlip(module, tiny_tokenizer(), f"random-{size}-seed{seed}", [])
    request = ModelRequest(task="bench", protocol={}, device=device, precision=precision, seed=seed)
    return model_class(loaded, request, IMAGE_SIZE)


@contextmanager
def eager_vision(module: torch.nn.Module) -> Iterator[None]:
    """transformers' own eager ViT attention inside the block (the project fuses it on load), so a
    reference path runs the ViT as BLIP's scripts do."""
    fused = [child for child in module.modules() if type(child) is FusedBlipAttention]
    for child in fused:
        child.__class__ = transformers.models.blip.modeling_blip.BlipAttention
    try:
        yield
    finally:
        for child in fused:
            child.__class__ = FusedBlipAttention


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark has: model size, device, CPU threads, seed."""
    parser.add_argument("--size", choices=("base", "small"), help="model size (default: base on GPU, small on CPU)")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--seed", type=int, default=0)


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, apply ``--threads``, and fill in ``--size`` from the device."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.gpu = args.device.startswith("cuda")
    args.size = args.size or ("base" if args.gpu else "small")
    return args


def describe(device: str) -> str:
    """One line naming the machine, so a figure is never separated from where it came from."""
    if device.startswith("cuda"):
        where = torch.cuda.get_device_name(torch.device(device))
    else:
        where = f"{_cpu_model()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
    return (
        f"device {device} ({where}); torch {torch.__version__}, transformers {transformers.__version__}, "
        f"python {platform.python_version()}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(device: str, fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """(best seconds of ``repeats`` calls, the last result), waiting for the GPU on both sides."""
    best, result = float("inf"), None
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        result = fn()
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CAPTION_WORDS = (8, 30)
"""Shortest and longest caption in words: COCO's collection asked for at least 8 words, and
BLIP's ``pre_caption`` keeps at most 30."""
CAPTION_TAIL_MEAN = 2.5
"""Mean words beyond the shortest: captions average about 10.5 words."""


def caption_words(count: int, generator: torch.Generator) -> torch.Tensor:
    """Word counts of ``count`` COCO-like captions: 8 words plus a geometric tail of mean 2.5,
    capped at 30. A model, not a measurement of COCO: what matters for speed is that most
    captions are short while a batch of thousands holds a few long ones, as on real data (the
    first image of COCO's Karpathy split already has one caption of 25 words)."""
    stop = 1 / (1 + CAPTION_TAIL_MEAN)
    uniform = torch.rand(count, generator=generator).clamp_min(1e-12)
    tail = torch.floor(torch.log(uniform) / torch.log(torch.tensor(1 - stop)))
    return (CAPTION_WORDS[0] + tail).clamp_max(CAPTION_WORDS[1]).long()


def random_texts(count: int, generator: torch.Generator, lengths: str = "full") -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` texts of ``[CLS]``, words and ``[SEP]``, right-padded to 35 as BLIP's evaluation
    pads them (ids from BERT's word range, 1000..29999). ``lengths``: "full", every text 35
    tokens; "coco", one token per word of ``caption_words``."""
    if lengths == "full":
        tokens = torch.full((count,), TEXT_TOKENS)
    else:
        tokens = (caption_words(count, generator) + 2).clamp_max(TEXT_TOKENS)
    ids = torch.randint(1000, 30000, (count, TEXT_TOKENS), generator=generator)
    positions = torch.arange(TEXT_TOKENS)[None]
    mask = (positions < tokens[:, None]).long()
    ids[:, 0] = 101
    ids[positions == (tokens[:, None] - 1)] = 102
    return ids * mask, mask
