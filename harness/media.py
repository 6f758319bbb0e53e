"""Decoding images and video frames, and a batched loader that keeps bad files from stopping a run.

Every decoding failure becomes a DataError naming the file, so a run on real data either stops
with one clear line or, under ``--skip-bad``, counts the sample as skipped. Decoding happens in
DataLoader worker processes when ``num_workers > 0`` so the accelerator is not left waiting on
JPEG and H.264 decoding.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from harness.errors import DataError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

FRAME_SAMPLINGS = ("strided", "uniform")

# What PIL reports for a file's content, by extension: a mismatch is only a note of ``harness data
# check``, since images are identified by their content (as PIL, and so BLIP, does).
_FORMAT_OF_EXTENSION = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

# Integer modes wider than 8 bits: PNG's 16-bit grayscale opens as one of these. PIL's
# ``convert("RGB")`` clips their values at 255, so any pixel above 255/65535 would come out white.
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _check_file(path: Path, kind: str) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise DataError(f"{path}: {kind} file not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read {kind} file ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise DataError(f"{path}: is not a regular file (expected a {kind} file)")
    if size == 0:
        raise DataError(f"{path}: {kind} file is empty (0 bytes)")


def load_image(path: Path) -> Image.Image:
    """The image at ``path``, fully decoded, in 8-bit RGB (``to_rgb``).

    The format is read from the file's content, never from its extension (NLVR2 ships JPEGs named
    ``.png``; PIL, and so BLIP, opens them by content). Raises DataError naming the file when it
    is missing, empty, truncated or not an image.
    """
    path = Path(path)
    _check_file(path, "image")
    try:
        with Image.open(path) as image:
            # load() decodes every pixel now, so a truncated file fails here, by name, and not
            # later inside a batch.
            image.load()
            return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image refused as too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, the pixels BLIP's ``Image.open(path).convert("RGB")`` gives for
    every 8-bit mode (palette, grayscale, CMYK, alpha dropped as PIL drops it).

    High-bit-depth images are scaled, not clipped: 16-bit integer modes keep their high byte (what
    PIL itself does with 16-bit RGB PNGs), float images in [0, 1] are scaled by 255 and others
    clipped to [0, 255]. PIL's plain conversion would turn a 16-bit grayscale PNG white.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)).convert("RGB")
    with warnings.catch_warnings():
        # PIL warns that palette transparency is best converted through RGBA; the RGB pixels are
        # the same either way, and a warning per image would flood the run's log.
        warnings.simplefilter("ignore", UserWarning)
        return image.convert("RGB")


def image_format_note(path: Path) -> str | None:
    """A remark for ``harness data check`` when an image's content is another format than its
    extension says (a JPEG named ``.png``); None when they agree or the file is not an image.
    Never an error: the image is read by its content."""
    expected = _FORMAT_OF_EXTENSION.get(Path(path).suffix.lower())
    if expected is None:
        return None
    try:
        with Image.open(path) as image:
            actual = image.format
    except (OSError, SyntaxError, ValueError, EOFError):
        return None
    if actual is None or actual == expected:
        return None
    return f"{path}: content is {actual} although the extension {Path(path).suffix!r} says {expected}; read as {actual}"


def frame_indices(total: int, num_frames: int, sampling: str) -> list[int]:
    """Indices of the frames to decode from a video of ``total`` frames.

    ``strided``: ``i * floor(total / num_frames)``, what BLIP's MSRVTT loader ends up decoding
    (its ``np.arange(0, n, n / F, dtype=int)`` steps by the integer part of ``n / F``), so the
    last frames of a clip may be left out. ``uniform``: the centre frame of each of
    ``num_frames`` equal segments, covering the whole clip. A video shorter than ``num_frames``
    is an error rather than a repeated frame, so every sample sees the protocol's frame count.
    """
    if num_frames < 1:
        raise DataError(f"num_frames must be at least 1, got {num_frames}")
    if sampling not in FRAME_SAMPLINGS:
        raise DataError(f"unknown frame sampling {sampling!r} (expected one of {', '.join(FRAME_SAMPLINGS)})")
    if total < num_frames:
        raise DataError(f"video has {total} frames, fewer than the {num_frames} asked for")
    if sampling == "strided":
        step = total // num_frames
        return [i * step for i in range(num_frames)]
    return [((2 * i + 1) * total) // (2 * num_frames) for i in range(num_frames)]


def decoder_threads(num_workers: int, cpu_count: int | None = None) -> int:
    """Threads for decord's decoder: one per DataLoader worker when there are workers (they
    already decode in parallel, and more threads would only contend for the same cores), else up
    to four in the main process, where a single thread would leave the other cores idle. Frame
    threading is bit-exact, so the frames do not depend on this choice."""
    if num_workers > 0:
        return 1
    return max(1, min(4, cpu_count if cpu_count is not None else os.cpu_count() or 1))


def load_video_frames(
    path: Path, num_frames: int, sampling: str, num_threads: int = 1, size: int | None = None
) -> list[Image.Image]:
    """``num_frames`` RGB frames of the video at ``path``, decoded with decord.

    With ``size``, decord scales every frame to ``size`` x ``size`` while decoding, as BLIP's
    video loader does (``VideoReader(path, width=S, height=S)``); its scaler is not PIL's
    bicubic, so the pixels differ from a native decode resized afterwards (decord 0.6 cannot
    scale to a few small sides, e.g. 24 or 48, and fails with a DataError on every video there).
    Without it, frames keep their native size.

    DataError naming the file for a missing, empty, unreadable or truncated video, and for one
    with fewer frames than asked.
    """
    import decord

    # Quiets ffmpeg's messages ("moov atom not found"); decord's own C++ log line on a failed open
    # cannot be silenced from Python, so a broken video may add that one line to stderr.
    decord.logging.set_level(decord.logging.QUIET)
    path = Path(path)
    _check_file(path, "video")
    try:
        scale = {} if size is None else {"width": size, "height": size}
        reader = decord.VideoReader(str(path), num_threads=num_threads, **scale)
        total = len(reader)
    except Exception as exc:  # decord raises its own DECORDError (a RuntimeError) or others
        raise DataError(f"{path}: cannot read video ({_first_line(exc)})") from exc
    try:
        indices = frame_indices(total, num_frames, sampling)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    try:
        batch = reader.get_batch(indices)
    except Exception as exc:
        raise DataError(f"{path}: cannot decode frames {indices} of {total} ({_first_line(exc)})") from exc
    # decord's native NDArray, or a tensor if another library switched decord's bridge.
    frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
    return [Image.fromarray(frame) for frame in frames]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _LoadedItems:
    """Map-style dataset whose items are ``(position, loaded value or DataError)``."""

    def __init__(self, items: Sequence[Any], load: Callable[[Any], Any]) -> None:
        self.items = items
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[int, Any]:
        try:
            return position, self.load(self.items[position])
        except DataError as exc:
            return position, exc


class _Collate:
    """Stacks a batch's decoded items into pixels (in the worker) and sets failures aside."""

    def __init__(self, preprocess: Callable[[list], torch.Tensor]) -> None:
        self.preprocess = preprocess

    def __call__(
        self, batch: list[tuple[int, Any]]
    ) -> tuple[list[int], torch.Tensor | None, list[tuple[int, DataError]]]:
        import torch

        good = [(position, value) for position, value in batch if not isinstance(value, DataError)]
        failed = [(position, value) for position, value in batch if isinstance(value, DataError)]
        if not good:
            return [], None, failed
        values = [value for _, value in good]
        if isinstance(values[0], (list, tuple)):
            pixels = torch.stack([self.preprocess(list(frames)) for frames in values])
        else:
            pixels = self.preprocess(values)
        return [position for position, _ in good], pixels, failed


def pixel_batches(
    items: Sequence[T],
    load: Callable[[T], Any],
    preprocess: Callable[[list], torch.Tensor],
    batch_size: int,
    num_workers: int = 0,
) -> Iterator[tuple[list[T], torch.Tensor | None, list[tuple[T, DataError]]]]:
    """Decode and preprocess ``items`` in batches, in order.

    ``load(item)`` returns a PIL image, or a list of frames for a video; ``preprocess`` maps a
    list of images to a (B, 3, S, S) tensor and is applied per video for frame lists, giving
    (B, F, 3, S, S). Yields ``(good_items, pixels, failures)`` per batch; ``pixels`` is None when
    every item of the batch failed, and ``failures`` pairs each bad item with its DataError so the
    caller decides between stopping and skipping (``RunContext.skip_or_raise``). With
    ``num_workers > 0`` loading and preprocessing run in DataLoader worker processes.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not items:
        return
    loader = DataLoader(
        _LoadedItems(items, load),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_Collate(preprocess),
    )
    for positions, pixels, failed in loader:
        yield (
            [items[position] for position in positions],
            pixels,
            [(items[position], error) for position, error in failed],
        )
