"""Where weights come from: a Hugging Face hub id (local cache only), a local directory, or an
official BLIP ``.pth`` file.

The harness never downloads: a hub id resolves only from the local cache, so a run behaves the same
online and offline, and a missing checkpoint fails up front with the exact id or file to fetch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ModelLoadError
from harness_plugins.blip.catalog import OFFICIAL_DOWNLOADS

WEIGHTS_DIR_ENV = "HARNESS_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/harness/weights")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

HUB = "hub"
DIRECTORY = "dir"
OFFICIAL = "pth"


@dataclass(frozen=True)
class WeightsSource:
    """Resolved weights: ``kind`` is ``hub`` or ``dir`` (a Hugging Face directory at ``path``) or
    ``pth`` (an official BLIP checkpoint file at ``path``); ``name`` is what the user asked for and
    what results record."""

    kind: str
    name: str
    path: Path


def weights_dir() -> Path:
    """Where official ``.pth`` files are looked up by bare file name."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def cached_hub_dir(repo_id: str) -> Path | None:
    """The local snapshot of a hub repository, or None when it is not in the cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        return None


def resolve_weights(weights: str) -> WeightsSource:
    """``--weights`` (or a preset's default) -> where the weights are; ``ModelLoadError`` naming
    the exact id or file and how to get it when they are not here."""
    path = Path(weights).expanduser()
    if path.is_dir():
        return WeightsSource(DIRECTORY, weights, path)
    if path.is_file():
        return WeightsSource(OFFICIAL, weights, path)
    if path.suffix in CHECKPOINT_SUFFIXES:
        candidate = weights_dir() / path.name
        if path.name == weights and candidate.is_file():
            return WeightsSource(OFFICIAL, weights, candidate)
        raise ModelLoadError(
            f"weights file {weights!r} not found (looked at {path} and {candidate}); download it on a machine "
            f"with internet (BLIP's releases: {OFFICIAL_DOWNLOADS}/{path.name}) and put it in "
            f"${WEIGHTS_DIR_ENV} (now {weights_dir()}), or pass --weights /path/to/{path.name}"
        )
    if _HUB_ID.fullmatch(weights):
        directory = cached_hub_dir(weights)
        if directory is None:
            raise ModelLoadError(
                f"Hugging Face checkpoint {weights!r} is not in the local cache (the harness never downloads). "
                f"Run `hf download {weights}` on a machine with internet and copy its cache "
                "(~/.cache/huggingface, or $HF_HOME) here, or pass --weights DIR with a saved copy"
            )
        return WeightsSource(HUB, weights, directory)
    raise ModelLoadError(
        f"--weights {weights!r} is neither an existing directory or file nor a Hugging Face id (owner/name)"
    )


def fetch_hint(weights: str) -> str:
    """How to get weights that are not here, in a few words: the exact command for a hub id,
    the download address and folder for an official file."""
    name = Path(weights).name
    if Path(weights).suffix in CHECKPOINT_SUFFIXES:
        return f"download {OFFICIAL_DOWNLOADS}/{name} into ${WEIGHTS_DIR_ENV} (now {weights_dir()})"
    if _HUB_ID.fullmatch(weights):
        return f"`hf download {weights}`"
    return "pass --weights with an existing directory, .pth file or Hugging Face id"


def missing_checkpoint(weights: str) -> str | None:
    """None when ``weights`` resolve here, else one line naming them and how to fetch them; what a
    plugin's ``missing_weights`` answers for each task before a run loads anything."""
    try:
        resolve_weights(weights)
    except ModelLoadError:
        return f"{weights}: {fetch_hint(weights)}"
    return None


def weight_files(directory: Path) -> list[Path]:
    """The files of a Hugging Face directory whose bytes are the weights (hashed into results)."""
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        found = sorted(directory.glob(pattern))
        if found:
            return found
    raise ModelLoadError(f"{directory}: no model.safetensors or pytorch_model.bin in this directory")
