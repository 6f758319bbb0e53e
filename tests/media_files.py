"""Real media files for tests: PIL images and H.264 mp4s written with PyAV, as decord reads them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def frame_colour(index: int) -> tuple[int, int, int]:
    """A colour that identifies frame ``index`` after lossy encoding (steps of 8 in red)."""
    return (8 * (index % 32), 128, 255 - 8 * (index % 32))


def write_mp4(
    path: Path,
    num_frames: int,
    size: int = 32,
    fps: int = 10,
    faststart: bool = False,
    colour: tuple[int, int, int] | None = None,
) -> Path:
    """An H.264 (yuv420p) mp4 of ``num_frames`` flat frames coloured by ``frame_colour`` (or all
    ``colour``); with ``faststart`` the index (moov) precedes the frames, so a truncated copy
    still opens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "10", "preset": "veryfast", "threads": "1"}
        for index in range(num_frames):
            pixels = np.full((size, size, 3), colour or frame_colour(index), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_avi(path: Path, num_frames: int, size: int = 32) -> Path:
    """An MPEG-4 Part 2 AVI, as the MSVD clips ship, whose frames grow brighter one by one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for index in range(num_frames):
            frame = np.full((size, size, 3), 30 * index % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 24, fmt: str = "JPEG") -> Path:
    """A flat-colour image file in ``fmt`` (whatever the extension of ``path`` says)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format=fmt)
    return path
