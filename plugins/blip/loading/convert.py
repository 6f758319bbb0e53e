"""``harness convert SRC.pth OUT_DIR``: an official BLIP checkpoint -> a Hugging Face directory.

The directory holds ``config.json``, ``model.safetensors`` and the tokenizer, so it loads with
``--weights OUT_DIR`` without the original file, without pickle, and without a BERT tokenizer in the
cache. It is written next to OUT_DIR first and moved into place when complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError, OutputError
from harness_plugins.blip.catalog import NLVR2
from harness_plugins.blip.heads import nlvr2
from harness_plugins.blip.loading.checkpoint import detect_head, module_from_official, read_checkpoint
from harness_plugins.blip.loading.tokenizer import load_tokenizer, tiny_tokenizer
from harness_plugins.common.weights import cached_hub_dir

AUTO = "auto"
TINY = "blip-tiny"


def convert_checkpoint(
    source: str | Path, out_dir: str | Path, image_size: int | None = None, tokenizer: str = AUTO
) -> tuple[Path, str]:
    """Convert ``source``; returns the directory written and the head found in the checkpoint.

    ``image_size`` resizes the position embeddings (default: the checkpoint's own resolution).
    ``tokenizer`` is ``auto`` (chosen by vocabulary size: BERT-base-uncased from the local cache, or
    the tiny vocabulary), ``blip-tiny``, a tokenizer directory or a cached hub id.
    """
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_file():
        raise ModelLoadError(f"{source}: no such checkpoint file")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OutputError(f"{out_dir} already exists and is not an empty directory; choose a new OUT_DIR")
    state = read_checkpoint(source)
    head = detect_head(state, str(source))
    module, chosen = module_from_official(state, str(source), head, image_size, _tokenizer(tokenizer))
    replace_directory(out_dir, lambda staging: save_head(module, head, chosen, staging))
    return out_dir, head


def save_head(module: Any, head: str, tokenizer: Any, folder: Path) -> None:
    """One head as a directory ``--weights`` loads: Hugging Face format, NLVR2 (which transformers
    lacks) in ``nlvr2.save_nlvr2``'s, with the tokenizer beside it."""
    if head == NLVR2:
        nlvr2.save_nlvr2(module, folder)
    else:
        module.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def replace_directory(out_dir: Path, write: Callable[[Path], None]) -> Path:
    """``write`` into a staging folder beside ``out_dir``, then swap it in: an interrupted or
    failed write never leaves half a model where a later run would load it."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _tokenizer(choice: str) -> Any | None:
    if choice == AUTO:
        return None
    if choice == TINY:
        return tiny_tokenizer()
    directory = Path(choice).expanduser()
    if not directory.is_dir():
        cached = cached_hub_dir(choice)
        if cached is None:
            raise ModelLoadError(
                f"--tokenizer {choice!r} is neither a directory nor a hub id in the local cache "
                f"(run `hf download {choice}` on a machine with internet)"
            )
        directory = cached
    return load_tokenizer(directory)


def run_convert(args: argparse.Namespace) -> int:
    out_dir, head = convert_checkpoint(args.source, args.out_dir, args.image_size, args.tokenizer)
    print(f"converted {args.source} (BLIP {head} checkpoint) -> {out_dir}; use it with --weights {out_dir}")
    return 0
