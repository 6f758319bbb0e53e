"""Reading CapFilt's inputs: img2dataset-style webdataset shards, or BLIP's pre-training JSON.

Both become a list of ``InputShard``s, the unit of work, resume and process assignment. A
webdataset shard is one tar file (the output shard keeps its name); BLIP's annotation list is cut
into slices of ``shard_size`` records, named by position, so a long JSON file resumes and splits
across processes the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
"""Sample members read as the image, in this order of preference (img2dataset writes ``jpg``)."""
DEFAULT_SHARD_SIZE = 1000


@dataclass(frozen=True)
class InputShard:
    """One unit of work: a tar file, or records ``[start, stop)`` of a JSON annotation list."""

    name: str
    path: Path
    start: int = 0
    stop: int | None = None

    @property
    def is_tar(self) -> bool:
        return self.stop is None


@dataclass
class WebSample:
    """A web image with its texts; ``image`` is the undecoded file content, kept byte for byte in
    the output."""

    key: str
    image: bytes
    image_ext: str
    web_texts: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BadSample:
    """A sample that cannot be used (no image, unreadable file); counted and reported, not fatal."""

    key: str
    reason: str


def expand_tar_pattern(pattern: str) -> list[Path]:
    """Local tar paths from a path or a brace pattern (``shards/{00000..00009}.tar``), each checked."""
    from braceexpand import braceexpand

    paths = [Path(p).expanduser() for p in braceexpand(pattern)]
    for path in paths:
        if not path.is_file():
            raise DataError(f"--input {pattern}: {path} does not exist")
        if path.stat().st_size == 0:
            raise DataError(f"--input {pattern}: {path} is empty (0 bytes)")
    return paths


def list_shards(source: str, shard_size: int = DEFAULT_SHARD_SIZE) -> list[InputShard]:
    """The input's shards in a fixed order. ``source`` is a ``.json`` annotation file, a directory
    of ``.tar`` shards, or a tar path or brace pattern."""
    path = Path(source).expanduser()
    if source.endswith(".json"):
        records = _read_annotation_list(path)
        return [
            InputShard(name=f"{start // shard_size:05d}", path=path, start=start, stop=min(start + shard_size, len(records)))
            for start in range(0, len(records), shard_size)
        ]
    paths = sorted(path.glob("*.tar")) if path.is_dir() else expand_tar_pattern(source)
    if not paths:
        raise DataError(f"--input {source}: no .tar shards there")
    names = [p.stem for p in paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"--input {source}: several shards are named {duplicates[0]!r}; output shards keep input names")
    return [InputShard(name=p.stem, path=p) for p in paths]


@lru_cache(maxsize=1)
def _read_annotation_list(path: Path) -> list[dict[str, Any]]:
    """The whole list, read once per process (every slice of a long file reads from it)."""
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--input {path}: not a readable JSON file ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) and "image" in r for r in records):
        raise DataError(f'--input {path}: expected a JSON list of {{"image": path, "caption": text}} records')
    if not records:
        raise DataError(f"--input {path}: the annotation list is empty")
    return records


def read_shard(shard: InputShard, image_root: Path | None = None, limit: int | None = None) -> Iterator[WebSample | BadSample]:
    """The shard's samples in order (at most ``limit``); a sample without a usable image is a
    ``BadSample``. JSON image paths are relative to ``image_root`` (default: the JSON's folder)."""
    samples = _read_tar(shard.path) if shard.is_tar else _read_annotations(shard, image_root or shard.path.parent)
    for count, sample in enumerate(samples):
        if limit is not None and count >= limit:
            return
        yield sample


def _texts(value: Any) -> list[str]:
    """A caption field (a string or BLIP's list of strings) as a list of non-empty texts."""
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def tar_samples(path: Path) -> Iterator[dict[str, Any]]:
    """One tar shard's samples as webdataset groups them (``__key__`` and one bytes value per
    extension), in order. The shard is not split between processes or workers: CapFilt assigns
    whole shards itself."""
    import webdataset as wds

    return iter(wds.WebDataset(str(path), shardshuffle=False, empty_check=False, nodesplitter=None,
                               workersplitter=None))


def _read_tar(path: Path) -> Iterator[WebSample | BadSample]:
    try:
        for raw in tar_samples(path):
            yield _tar_sample(raw)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable tar shard ({exc})") from exc


def _tar_sample(raw: dict[str, Any]) -> WebSample | BadSample:
    key = raw["__key__"]
    ext = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
    if ext is None:
        return BadSample(key, f"no image member ({', '.join(IMAGE_EXTENSIONS)})")
    meta: dict[str, Any] = {}
    if "json" in raw:
        try:
            meta = json.loads(raw["json"])
        except (UnicodeDecodeError, json.JSONDecodeError):
            return BadSample(key, "its .json member is not valid JSON")
    texts = _texts(raw["txt"].decode("utf-8", errors="replace")) if "txt" in raw else _texts(meta.get("caption"))
    return WebSample(key=key, image=raw[ext], image_ext=ext, web_texts=texts, meta=meta)


def _read_annotations(shard: InputShard, image_root: Path) -> Iterator[WebSample | BadSample]:
    records = _read_annotation_list(shard.path)[shard.start : shard.stop]
    for index, record in enumerate(records, start=shard.start):
        key = f"{index:09d}"
        image_path = image_root / str(record["image"])
        try:
            content = image_path.read_bytes()
        except OSError as exc:
            yield BadSample(key, f"{image_path}: {exc.strerror or exc}")
            continue
        ext = image_path.suffix.lower().lstrip(".") or "jpg"
        yield WebSample(key=key, image=content, image_ext=ext, web_texts=_texts(record.get("caption")),
                        meta={"image": str(record["image"])})
