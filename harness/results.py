"""Result records: written atomically, with everything needed to trust or reproduce a number."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import subprocess
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

import harness

SCHEMA = "harness.result/1"
RESULT_NAME = "result.json"
PER_SAMPLE_NAME = "per_sample.jsonl"


TEMPORARY_MARK = ".tmp-"
"""Temporaries of atomic writes are named ``.NAME.tmp-RANDOM`` beside ``NAME``."""


def create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty file beside ``path`` to write ``path``'s next content into, and its open
    descriptor. Created with mode 0666 less the umask, as ``open()`` creates files, so the renamed
    result is as readable as any file the user writes (``tempfile.mkstemp`` would make it 0600)."""
    while True:
        temporary = path.parent / f".{path.name}{TEMPORARY_MARK}{secrets.token_hex(4)}"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def remove_leftovers(directory: Path) -> list[Path]:
    """Delete the temporaries a killed atomic write left in ``directory`` (never a finished file:
    those were renamed away from their temporary name). Call only while no other process writes
    there (a run holds its directory's lock)."""
    leftovers = sorted(directory.glob(f".*{TEMPORARY_MARK}*"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def _write_atomic(path: Path, write: Callable[[TextIO], None]) -> Path:
    """Write through a temp file in the same directory, fsync, then rename: a reader sees the old
    file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    def write(handle: TextIO) -> None:
        json.dump(data, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")

    return _write_atomic(path, write)


def write_jsonl_atomic(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    def write(handle: TextIO) -> None:
        for record in records:
            handle.write(json.dumps(record) + "\n")

    return _write_atomic(path, write)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(name: str, files: Iterable[Path]) -> dict[str, Any]:
    return {
        "name": name,
        "files": [{"path": str(Path(f).resolve()), "sha256": sha256_file(Path(f))} for f in files],
    }


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The harness checkout's commit, when it runs from one (an installed wheel has none)."""
    source = Path(harness.__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5,
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "harness": harness.__version__,
        "git_commit": git_commit(),
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / RESULT_NAME).read_text(encoding="utf-8"))
