"""On-disk cache of vision-encoder features: each image (or video) is encoded once across tasks
and runs.

Why: the vision encoder is the largest per-image cost of most tasks, and the same media recur:
Flickr zero-shot and VisDial reuse the COCO retrieval model, and re-running a task after a change
to a head, a metric or a protocol setting the vision side does not read would encode every image
again. Features are stored as one safetensors file per item, in a directory named by a key of
everything that determines them:

- the weights: the model's ``weights_name`` and the SHA-256 of each of its ``weights_files``;
- the preprocessing: the model's class (which fixes resizing and normalisation) and ``image_size``;
- the numerics: precision and device type (bf16 features are not fp32 features);
- the media variant: images, or videos with their frame count and frame sampling.

Inside it an item is named by the SHA-256 of its file's bytes, so a moved or renamed file still
hits and an edited one misses. ``key.json`` in each directory spells the key out. Files are
written under a temporary name and renamed, so processes sharing a cache never read half a file;
an unreadable entry counts as a miss and is written again. A model that does not name its
weights (no ``weights_name``) is never cached: its features could not be told apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.capabilities import VisualFeatures
from harness.config import check_output_dir
from harness.errors import OutputError
from harness.results import create_temporary, sha256_file, write_json_atomic

if TYPE_CHECKING:
    from harness.context import RunContext

SCHEMA = "harness.features/1"
AUTO = "auto"
SUFFIX = ".safetensors"


def open_feature_cache(value: str | None) -> FeatureCache | None:
    """``--feature-cache``: None or empty = off; ``auto`` = ``$HARNESS_CACHE/features``; else a
    directory, created and checked writable here, before any model loads (a path that is a file
    or a read-only cache is named as the cache, not mistaken for the run directory)."""
    if not value:
        return None
    if value == AUTO:
        from harness.toy.suite import default_cache_dir

        root = default_cache_dir() / "features"
    else:
        root = Path(value).expanduser()
    return FeatureCache(check_output_dir(root, "feature cache (--feature-cache)"))


@lru_cache(maxsize=64)
def _weights_file_digest(path: str, size: int, modified_ns: int) -> str:
    """A weights file's SHA-256, hashed once per process while its size and time stay the same."""
    return sha256_file(Path(path))


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _weights_file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _content_digest(path: Path) -> str | None:
    """SHA-256 of a media file, or None when it cannot be read (decoding will report why)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


class FeatureCache:
    """A cache directory; ``store`` binds it to one model and one media variant."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, model: Any, precision: str, device: str, variant: dict[str, Any]) -> dict[str, Any] | None:
        """Everything the features depend on, or None when the model does not name its weights."""
        name = getattr(model, "weights_name", None)
        if not name:
            return None
        model_class = type(model)
        return {
            "schema": SCHEMA,
            "weights": {
                "name": str(name),
                "files": [_file_digest(Path(path)) for path in getattr(model, "weights_files", [])],
            },
            "model_class": f"{model_class.__module__}.{model_class.__qualname__}",
            "image_size": getattr(model, "image_size", None),
            "precision": precision,
            "device_type": str(device).split(":")[0],
            "variant": variant,
        }

    def store(self, model: Any, precision: str, device: str, **variant: Any) -> FeatureStore | None:
        key = self.key(model, precision, device, variant)
        if key is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
        directory = self.root / digest
        if not (directory / "key.json").is_file():
            with cache_writes(self.root):
                write_json_atomic(directory / "key.json", key)
        return FeatureStore(directory, device, cache_root=self.root)


@contextmanager
def cache_writes(root: Path) -> Iterator[None]:
    """A write into the cache that fails (full disk, read-only, a file where a folder should be)
    is one line naming the cache: the run directory is fine, and a run without the cache (or with
    another ``--feature-cache``) resumes from the predictions already saved."""
    try:
        yield
    except OSError as exc:
        raise OutputError(
            f"feature cache {root}: cannot write {exc.filename or 'a feature file'} ({exc.strerror or exc}); "
            "free space or pick another --feature-cache DIR (or none), then resume the run"
        ) from exc
    except Exception as exc:
        from safetensors import SafetensorError  # how safetensors reports a failed write

        if not isinstance(exc, SafetensorError):
            raise
        raise OutputError(f"feature cache {root}: cannot write a feature file ({exc}); free space or pick another "
                          "--feature-cache DIR (or none), then resume the run") from exc


def cached_batches(
    store: FeatureStore | None, paths: Sequence[Path], ctx: RunContext
) -> Iterator[tuple[list[Path], VisualFeatures, list[Any]]]:
    """``(items, features, no failures)`` for ``paths`` found by ``store.split``, read in batches
    of ``--batch-size`` and timed as the stage ``load_cached_features``; shaped like a task's
    encoding batches so cached and freshly encoded items go through the same loop."""
    for start in range(0, len(paths), ctx.batch_size):
        chunk = list(paths[start : start + ctx.batch_size])
        with ctx.stage("load_cached_features", items=len(chunk)):
            visual = store.load(chunk)
        yield chunk, visual, []


def feature_store(ctx: RunContext, model: Any, **variant: Any) -> FeatureStore | None:
    """The run's store for ``model``'s features of one media variant; None without a cache."""
    if ctx.feature_cache is None:
        return None
    return ctx.feature_cache.store(model, ctx.precision, ctx.device, **variant)


class FeatureStore:
    """Features of one model and media variant, one file per item, named by content digest."""

    def __init__(self, directory: Path, device: str, max_workers: int = 8, cache_root: Path | None = None) -> None:
        self.directory = directory
        self.cache_root = cache_root or directory
        self.device = device
        self.max_workers = max_workers
        self.digests: dict[Path, str] = {}

    def file(self, digest: str) -> Path:
        return self.directory / digest[:2] / f"{digest}{SUFFIX}"

    def split(self, paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
        """``(cached, missing)``, each in the given order. Hashes every readable file (in threads:
        hashing releases the GIL) and remembers the digests for ``save``."""
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            digests = dict(zip(paths, pool.map(_content_digest, paths), strict=True))
        self.digests.update({path: digest for path, digest in digests.items() if digest is not None})
        cached = [path for path in paths if path in self.digests and self._readable(self.file(self.digests[path]))]
        chosen = set(cached)
        return cached, [path for path in paths if path not in chosen]

    @staticmethod
    def _readable(file: Path) -> bool:
        from safetensors import safe_open

        if not file.is_file():
            return False
        try:
            with safe_open(str(file), framework="pt") as handle:
                return "tokens" in handle.keys()
        except Exception:  # safetensors raises its own error types for a damaged file
            return False

    def load(self, paths: Sequence[Path]) -> VisualFeatures:
        """The features of ``paths`` (all found by ``split``), rows in that order, on the device."""
        import torch
        from safetensors.torch import load_file

        rows = [load_file(str(self.file(self.digests[path])), device=str(self.device)) for path in paths]
        tokens = torch.stack([row["tokens"] for row in rows])
        if any("embeds" not in row for row in rows):
            return VisualFeatures(embeds=None, tokens=tokens)
        return VisualFeatures(embeds=torch.stack([row["embeds"] for row in rows]), tokens=tokens)

    def save(self, paths: Sequence[Path], visual: VisualFeatures) -> None:
        """Store row ``i`` of ``visual`` as the features of ``paths[i]`` (files ``split`` could
        not read are not stored)."""
        from safetensors.torch import save_file

        for row, path in enumerate(paths):
            digest = self.digests.get(path)
            if digest is None:
                continue
            tensors = {"tokens": visual.tokens[row].detach().to("cpu").clone()}
            if visual.embeds is not None:
                tensors["embeds"] = visual.embeds[row].detach().to("cpu").clone()
            target = self.file(digest)
            with cache_writes(self.cache_root):
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, temporary = create_temporary(target)
                os.close(fd)
                try:
                    save_file(tensors, temporary, metadata={"source": str(path)})
                    os.replace(temporary, target)
                except BaseException:
                    Path(temporary).unlink(missing_ok=True)
                    raise
