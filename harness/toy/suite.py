"""Build the toy suite atomically and find (or build) it in the cache.

A suite is built in a temporary sibling directory and renamed into place at the end, so a reader
never sees half a suite and two processes racing to build the same cached suite both end up
using one complete copy. ``TOY_SUITE.json`` lists every file with its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import OutputError
from harness.toy.karpathy import build_coco, build_flickr
from harness.toy.msrvtt_msvd import build_msrvtt, build_msvd
from harness.toy.nlvr2 import build_nlvr2
from harness.toy.nocaps import build_nocaps
from harness.toy.output import write_json
from harness.toy.visdial import build_visdial
from harness.toy.vqa import build_vqa
from harness.toy.web import build_web

TOY_VERSION = 2
"""Bump whenever any builder's output changes, so cached suites are rebuilt."""

MANIFEST = "TOY_SUITE.json"

BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "coco": build_coco,
    "flickr30k": build_flickr,
    "nocaps": build_nocaps,
    "vqav2": build_vqa,
    "nlvr2": build_nlvr2,
    "visdial": build_visdial,
    "msrvtt": build_msrvtt,
    "msvd": build_msvd,
    "web": build_web,
}
"""Sub-directory name -> builder writing that data set into it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_suite(root: Path, seed: int, progress: bool) -> None:
    for name, build in BUILDERS.items():
        start = time.perf_counter()
        build(root / name, seed)
        if progress:
            print(f"toy suite: {name} built in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    files = {
        path.relative_to(root).as_posix(): _sha256(path) for path in sorted(root.rglob("*")) if path.is_file()
    }
    write_json(root / MANIFEST, {"version": TOY_VERSION, "seed": seed, "datasets": list(BUILDERS), "files": files})


def read_manifest(suite: Path) -> dict | None:
    """The suite's manifest, or None if ``suite`` holds no readable toy-suite manifest."""
    try:
        manifest = json.loads((suite / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def _is_complete(suite: Path, seed: int) -> bool:
    manifest = read_manifest(suite)
    return (
        manifest is not None
        and manifest.get("version") == TOY_VERSION
        and manifest.get("seed") == seed
        and all((suite / rel).is_file() for rel in manifest["files"])
        # A suite cached before a data set was added lacks it (adding one changes no other file,
        # so the version stays): the manifest names the data sets it holds.
        and set(BUILDERS) <= set(manifest.get("datasets", ()))
    )


def _build_beside(target: Path, seed: int, progress: bool) -> Path:
    """Build a suite in a fresh temporary directory next to ``target`` and return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the suite is ordinary readable data
    try:
        _write_suite(tmp, seed, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _discard(path: Path) -> None:
    """Rename ``path`` out of the way first, so its name is free at once, then delete it.

    Another process may have discarded it already; that is fine.
    """
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    try:
        path.rename(trash / path.name)
    except FileNotFoundError:
        pass
    shutil.rmtree(trash, ignore_errors=True)


def build_toy_suite(out_dir: Path, seed: int = 0, *, progress: bool = False) -> Path:
    """Write the whole toy suite into ``out_dir`` (replacing a toy suite already there).

    Refuses a non-empty ``out_dir`` that is not a toy suite, so a typo cannot wipe real data.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"toy suite: {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_manifest(out_dir) is None:
        raise OutputError(
            f"toy suite: {out_dir} is not empty and holds no {MANIFEST}; "
            "refusing to write a toy suite over other files (choose an empty or new directory)"
        )
    try:
        built = _build_beside(out_dir, seed, progress)
    except OSError as err:
        raise OutputError(f"toy suite: cannot write next to {out_dir}: {err}") from err
    try:
        if out_dir.exists():
            _discard(out_dir)
        built.rename(out_dir)
    except OSError as err:
        shutil.rmtree(built, ignore_errors=True)
        raise OutputError(f"toy suite: cannot move the new suite to {out_dir}: {err}") from err
    return out_dir


def default_cache_dir() -> Path:
    """``$HARNESS_CACHE`` if set, else ``~/.cache/harness``."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


def ensure_toy_suite(cache_dir: Path | None = None, seed: int = 0) -> Path:
    """The cached suite for ``seed`` (``<cache>/toy-v<TOY_VERSION>-seed<seed>``), built if absent.

    Safe under concurrency: each process builds into its own temporary directory; the first
    rename wins and a loser discards its copy and uses the winner's.
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / f"toy-v{TOY_VERSION}-seed{seed}"
    if _is_complete(target, seed):
        return target
    try:
        built = _build_beside(target, seed, progress=False)
        if target.exists() and not _is_complete(target, seed):
            _discard(target)
        try:
            built.rename(target)
        except OSError:
            shutil.rmtree(built, ignore_errors=True)
    except OSError as err:
        raise OutputError(f"toy suite: cannot build {target}: {err}") from err
    if not _is_complete(target, seed):
        raise OutputError(f"toy suite: {target} is incomplete after building; delete it and retry")
    return target
