"""Reading and validating annotation files, so every task reports bad data the same way.

A benchmark run can take hours; a malformed record found at sample 40,000 must name the file,
the record and what was expected, in one line, before any model work is wasted. Tasks read their
files through these helpers and check each record's fields with ``require_fields``; media paths
from annotations go through ``resolve_media_path`` so an annotation can never point outside the
data directory.
"""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, get_args, get_origin

from harness.errors import DataError

FieldType = type | types.GenericAlias | tuple[type | types.GenericAlias, ...]
"""What ``require_fields`` accepts per field: a class (``str``), a homogeneous list
(``list[str]``), or a tuple of those meaning "any of" (``(str, list[str])``)."""

_CHUNK = 1 << 20


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: annotation file not found") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, expected an annotation file") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read annotation file ({exc.strerror or exc})") from exc


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file; DataError naming the file and line:column if malformed."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno} column {exc.colno}: malformed JSON ({exc.msg})") from exc


def read_jsonl(path: Path) -> list[Any]:
    """One parsed value per non-blank line of a JSON Lines file (MSRVTT's annotation format)."""
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} column {exc.colno}: malformed JSON ({exc.msg})") from exc
    return records


def _describe(expected: FieldType) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_describe(option) for option in expected)
    if get_origin(expected) is list:
        (item,) = get_args(expected)
        return f"list of {_describe(item)}"
    return expected.__name__


def _matches(value: Any, expected: FieldType) -> bool:
    if isinstance(expected, tuple):
        return any(_matches(value, option) for option in expected)
    if get_origin(expected) is list:
        (item,) = get_args(expected)
        return isinstance(value, list) and all(_matches(element, item) for element in value)
    # JSON true/false must not pass as a number: bool is a subclass of int in Python.
    if isinstance(value, bool) and expected is not bool:
        return False
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "str", bool: "bool", int: "int", float: "float"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def require_fields(
    record: Any, fields: Mapping[str, FieldType], path: Path, index: int
) -> None:
    """Raise DataError unless ``record`` is a JSON object whose ``fields`` have the given types.

    ``index`` is the record's position in the file (0-based), so the user can find it. A field
    type is a class, ``list[X]`` (every element an X) or a tuple of alternatives; ``float``
    accepts integers too, and no numeric type accepts ``true``/``false``.
    """
    if not isinstance(record, dict):
        raise DataError(f"{path}: record {index}: expected a JSON object, got {_json_type(record)}")
    for name, expected in fields.items():
        if name not in record:
            raise DataError(f"{path}: record {index}: field '{name}' missing (expected {_describe(expected)})")
        value = record[name]
        if not _matches(value, expected):
            raise DataError(
                f"{path}: record {index}: field '{name}' has type {_json_type(value)} "
                f"(expected {_describe(expected)})"
            )


def fingerprint(paths: Sequence[Path]) -> str:
    """SHA-256 over the files' bytes in the given order (each prefixed by its length, so that
    moving bytes from one file to the next changes the digest); recorded in every result."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            size = path.stat().st_size
            digest.update(size.to_bytes(8, "big"))
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise DataError(f"{path}: cannot read annotation file ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def resolve_media_path(media_root: Path, relative: str, path: Path, index: int) -> Path:
    """The media file an annotation names, refused if it could lie outside ``media_root``.

    Annotations are data, not code, but a path in them is still an instruction to open a file:
    an absolute path, a ``..`` that climbs out, or a symlink inside the root that points
    elsewhere is refused with DataError naming the annotation file and record. The file's
    existence is not checked here (the media loaders report a missing file by name).
    """
    where = f"{path}: record {index}"
    if not isinstance(relative, str) or not relative.strip():
        raise DataError(f"{where}: media path {relative!r} is empty (expected a path relative to {media_root})")
    if "\x00" in relative:
        raise DataError(f"{where}: media path {relative!r} contains a NUL byte")
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise DataError(f"{where}: media path {relative!r} is absolute (expected a path relative to {media_root})")
    root = media_root.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise DataError(f"{where}: media path {relative!r} escapes the media folder {media_root}")
    return candidate


def check_unique_ids(ids: Iterable[str], path: Path) -> None:
    """DataError naming the first id that occurs twice; predictions are keyed by sample id, so a
    duplicate would silently overwrite another sample's prediction."""
    first_seen: dict[str, int] = {}
    for index, sample_id in enumerate(ids):
        if sample_id in first_seen:
            raise DataError(
                f"{path}: duplicate sample id {sample_id!r} (records {first_seen[sample_id]} and {index})"
            )
        first_seen[sample_id] = index
