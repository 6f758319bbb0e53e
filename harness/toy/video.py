"""Write toy clips as H.264 mp4 files with PyAV.

libx264 is not byte-reproducible by default, even single-threaded: measured here (x264 through
PyAV 18), about 5 % of the toy clips came out differently on repeated encodes of identical frames,
and the variation comes from its rate-control lookahead (``rc-lookahead=0``, ``mbtree=0`` or
``bframes=0`` each removed it in 3,200 encodes). We keep B-frames (real clips have them, and
decoders must cope) and switch the lookahead off, on one thread, so a seed gives identical
bytes for a given libx264 build. PyAV is imported only when a clip is written, so the rest of the
toy package (its vocabulary feeds the tiny tokenizer) imports on hosts without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.toy.draw import render_objects
from harness.toy.scenes import CANVAS, Clip
from harness.toy.sizes import VIDEO_FPS, VIDEO_FRAMES


def write_clip(clip: Clip, path: Path, frames: int = VIDEO_FRAMES, fps: int = VIDEO_FPS) -> None:
    """Encode ``frames`` frames of ``clip`` (yuv420p, libx264) to ``path``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = CANVAS
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "rc-lookahead=0"}
        for i in range(frames):
            image = render_objects(clip.objects_at(i / (frames - 1)), clip.background)
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
