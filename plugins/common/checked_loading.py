"""Loading a transformers class from a Hugging Face directory, refusing weights that do not fit.

transformers only warns about missing, unexpected or mis-shaped keys and initialises what is
missing at random; a benchmark must never score such a model, so every mismatch is an error that
names the keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import ModelLoadError

_PROBLEMS = (("missing_keys", "missing keys"), ("unexpected_keys", "unexpected keys"), ("mismatched_keys", "shape mismatches"))


def from_pretrained_checked(model_class: type, directory: Path, name: str, **kwargs: Any) -> nn.Module:
    """``model_class.from_pretrained(directory)`` from local files in float32; ``ModelLoadError``
    naming (up to 8 of) the keys when any weight is missing, unexpected or of the wrong shape."""
    try:
        module, info = model_class.from_pretrained(
            str(directory), local_files_only=True, dtype=torch.float32, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{name}: cannot load {model_class.__name__} from {directory} ({exc})") from exc
    problems = [
        f"{label} {', '.join(map(str, sorted(info.get(key) or ())[:8]))}" for key, label in _PROBLEMS if info.get(key)
    ]
    if problems or info.get("error_msgs"):
        detail = "; ".join(problems) or str(info["error_msgs"])
        raise ModelLoadError(f"{name}: weights do not fit {model_class.__name__}: {detail}")
    return module
