"""The BLIP plugin's registration: three presets, ``harness convert`` and ``harness toy train``.

Registered through the ``harness`` entry point like any third-party plugin. Importing this module
imports neither torch nor transformers: factories are named as strings and the commands
import their implementations when they run.
"""

from __future__ import annotations

import argparse
import os

from harness import hookimpl
from harness.specs import ModelSpec
from harness_plugins.blip.catalog import (
    ALL_CAPABILITIES,
    BASE_CAVEATS,
    BASE_PUBLISHED_ROWS,
    BASE_WEIGHTS,
    LARGE_CAVEATS,
    LARGE_PUBLISHED_ROWS,
    LARGE_WEIGHTS,
    TINY_IMAGE_SIZE,
    TINY_WEIGHTS_NOTE,
)

MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="blip",
        factory="harness_plugins.blip.presets:build_blip",
        description=(
            "BLIP ViT-B (Li et al. 2022) with the fine-tuned checkpoint of each task; VisDial is zero-shot with "
            "the COCO ITM model (BLIP released no VisDial checkpoint); NLVR2 needs the official model_base_nlvr.pth"
        ),
        capabilities=ALL_CAPABILITIES,
        default_weights=BASE_WEIGHTS,
        baseline_rows=BASE_PUBLISHED_ROWS,
        caveats=BASE_CAVEATS,
        missing_weights="harness_plugins.blip.presets:missing_blip_weights",
    ),
    ModelSpec(
        name="blip-large",
        factory="harness_plugins.blip.presets:build_blip_large",
        description=(
            "BLIP ViT-L checkpoints where released (retrieval, captioning); VQA uses the ViT-B CapFilt-L model, "
            "NLVR2 has no large checkpoint (pass --weights); VisDial zero-shot with the large COCO ITM model"
        ),
        capabilities=ALL_CAPABILITIES,
        default_weights=LARGE_WEIGHTS,
        baseline_rows=LARGE_PUBLISHED_ROWS,
        caveats=LARGE_CAVEATS,
        missing_weights="harness_plugins.blip.presets:missing_blip_large_weights",
    ),
    ModelSpec(
        name="blip-tiny",
        factory="harness_plugins.blip.presets:build_blip_tiny",
        description=(
            f"BLIP at toy size (width 128, 2 layers, {TINY_IMAGE_SIZE} px) with every head, for tests and the toy "
            "suite; no download"
        ),
        capabilities=ALL_CAPABILITIES,
        default_weights={"*": TINY_WEIGHTS_NOTE},
        protocol_overrides={"image_size": TINY_IMAGE_SIZE},
    ),
)


@hookimpl
def harness_register_models(registry) -> None:
    for spec in MODEL_SPECS:
        registry.add_model(spec)


@hookimpl
def harness_add_commands(
    subparsers: argparse._SubParsersAction, toy_subparsers: argparse._SubParsersAction
) -> None:
    _add_convert(subparsers)
    _add_toy_train(toy_subparsers)


def _add_toy_train(toy_subparsers: argparse._SubParsersAction) -> None:
    parser = toy_subparsers.add_parser(
        "train",
        help="train blip-tiny on the toy suite (17.5 minutes measured on 2 idle CPU cores)",
        description=(
            "Train every head of blip-tiny on the toy suite's train splits with BLIP's objectives: ITC, ITM with "
            "hard negatives and the captioning LM loss on shared weights, then the VQA (image and video "
            "questions) and NLVR2 fine-tunes. Deterministic for a seed on CPU; writes safetensors (float16) "
            "that blip-tiny loads by default when written to the default --out."
        ),
    )
    parser.add_argument(
        "--out", default=None,
        help="directory for the four heads (default: the shipped plugins/blip/weights/blip-tiny)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and data order (default 0)")
    parser.add_argument(
        "--data-root", default=None,
        help="a toy suite directory (default: the cached suite, built if absent)",
    )
    parser.set_defaults(func=_toy_train)


def _toy_train(args: argparse.Namespace) -> int:
    # Set before torch loads OpenMP: busy-waiting worker threads slow training tens of times
    # on a machine whose cores other processes also use; the results do not depend on it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from harness_plugins.blip.training.trainer import run_train

    return run_train(args)


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official BLIP .pth checkpoint into a Hugging Face directory",
        description=(
            "Convert an official BLIP checkpoint (model_base_retrieval_coco.pth, model_base_caption_capfilt_large.pth, "
            "model_base_vqa_capfilt_large.pth, model_base_nlvr.pth, the large variants, ...) into a directory with "
            "config.json, model.safetensors and the tokenizer, usable as `harness run --weights OUT_DIR`. The head "
            "(retrieval, caption, vqa, nlvr2) is detected from the keys; momentum encoders, queues and the "
            "temperature are dropped; the file is read with torch.load(weights_only=True), never unpickling code."
        ),
    )
    parser.add_argument("source", metavar="SRC.pth", help="official BLIP checkpoint file")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to create (must not exist, or be empty)")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="store the position embeddings at this resolution (default: the checkpoint's own); runs resize "
        "them to each task's protocol anyway",
    )
    parser.add_argument(
        "--tokenizer", default="auto",
        help="'auto' (default: BERT-base-uncased from the local Hugging Face cache, or the tiny vocabulary when "
        "the checkpoint's vocabulary matches it), 'blip-tiny', a tokenizer directory, or a cached hub id",
    )
    parser.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from harness_plugins.blip.loading.convert import run_convert

    return run_convert(args)
