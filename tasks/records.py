"""Turning annotation records into samples one record at a time, so that a bad record either stops
the load with a message naming the file and record, or (``--skip-bad``) is set aside and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from harness.annotations import check_unique_ids, resolve_media_path
from harness.errors import ConfigError, DataError
from harness.task import SkippedSample

T = TypeVar("T")
V = TypeVar("V")


def split_entry(task: str, split: str, entries: Mapping[str, V]) -> V:
    """What a task keeps per split (file names), or ConfigError naming the known splits."""
    try:
        return entries[split]
    except KeyError:
        raise ConfigError(f"{task}: unknown split {split!r} (splits: {', '.join(entries)})") from None


def collect_records(
    records: Any,
    path: Path,
    parse: Callable[[Any, int], T],
    key: Callable[[T], str],
    *,
    skip_bad: bool,
) -> tuple[list[T], list[SkippedSample]]:
    """``parse(record, index)`` for every record of a JSON list, keyed by ``key``.

    A record whose ``parse`` raises DataError stops the load, or under ``skip_bad`` is listed as
    skipped under its position (``file[index]``), since a malformed record may have no usable id.
    Keys must be unique (predictions are stored by them): a repeated key is an error, or under
    ``skip_bad`` the later records with it are skipped and the first is kept.
    """
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    parsed: list[tuple[int, T]] = []
    skipped: list[SkippedSample] = []
    for index, record in enumerate(records):
        try:
            parsed.append((index, parse(record, index)))
        except DataError as error:
            if not skip_bad:
                raise
            skipped.append(SkippedSample(f"{path.name}[{index}]", str(error)))
    if not skip_bad:
        check_unique_ids([key(item) for _, item in parsed], path)
        return [item for _, item in parsed], skipped
    first: dict[str, int] = {}
    kept: list[T] = []
    for index, item in parsed:
        item_key = key(item)
        if item_key in first:
            reason = f"{path}: record {index}: duplicate id {item_key!r} (record {first[item_key]} has it too and is kept)"
            skipped.append(SkippedSample(f"{path.name}[{index}]", reason))
            continue
        first[item_key] = index
        kept.append(item)
    return kept, skipped


class MediaPaths:
    """Resolves the media paths of annotation records under one media folder, checking that each
    file exists (once per file, however many records name it), so a missing file is reported
    when the data is loaded, before any model is built."""

    def __init__(self, media_root: Path) -> None:
        self.media_root = media_root
        self._seen: dict[str, Path] = {}

    def __call__(self, relative: str, path: Path, index: int) -> Path:
        resolved = self._seen.get(relative)
        if resolved is None:
            resolved = resolve_media_path(self.media_root, relative, path, index)
            if not resolved.is_file():
                raise DataError(f"{path}: record {index}: image {relative!r} not found (looked for {resolved})")
            self._seen[relative] = resolved
        return resolved
