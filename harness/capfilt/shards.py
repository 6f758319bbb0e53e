"""CapFilt's output: one webdataset shard per input shard, each with a manifest, written atomically.

``shards/NAME.tar`` holds every usable input sample under its key: the image bytes unchanged and
``KEY.json`` with the kept texts and every scored text (so another threshold can be applied later
without running the models again). ``shards/NAME.json`` (the manifest: sample counts, the bad
samples and why) is written after the tar; a shard is finished when its manifest exists, so a
resumed run never redoes it. Both are written to a temporary name and renamed, and tar members
carry a fixed mtime, so the same input gives byte-identical shards however often it is resumed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.capfilt.sources import tar_samples
from harness.results import write_json_atomic

SHARDS_DIR = "shards"
FIXED_MTIME = 0.0
PUBLISHED_MODE = 0o644
"""A data set is for reading by others: not the 0600 of a temporary file."""


def shard_paths(output: Path, name: str) -> tuple[Path, Path]:
    """(tar, manifest) of an output shard."""
    folder = output / SHARDS_DIR
    return folder / f"{name}.tar", folder / f"{name}.json"


def is_finished(output: Path, name: str) -> bool:
    tar, manifest = shard_paths(output, name)
    return tar.is_file() and manifest.is_file()


def write_shard(output: Path, name: str, samples: Sequence[dict[str, Any]], manifest: dict[str, Any]) -> Path:
    """Write ``samples`` (``{"__key__", image ext: bytes, "json": dict}``) and then the manifest."""
    import webdataset as wds

    tar, manifest_path = shard_paths(output, name)
    tar.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{tar.name}.", dir=tar.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = wds.TarWriter(handle, mtime=FIXED_MTIME, encoder=False)
            for sample in samples:
                writer.write({k: _encode(v) for k, v in sample.items()})
            writer.close()
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, PUBLISHED_MODE)
        os.replace(tmp, tar)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json_atomic(manifest_path, manifest)
    return tar


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True).encode("utf-8")
    return value


def read_manifests(output: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    return [json.loads(shard_paths(output, name)[1].read_text(encoding="utf-8")) for name in names]


def read_sample_json(output: Path, names: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Every written sample's JSON, shard by shard, read back through webdataset."""
    for name in names:
        for sample in tar_samples(shard_paths(output, name)[0]):
            yield json.loads(sample["json"])
