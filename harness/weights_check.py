"""Checks a checkpoint's tensors against the module they are meant for, before loading them.

Why: transformers' ``from_pretrained`` casts every tensor to the requested dtype, so integer
weights (a quantised or damaged file) become floats silently: a wrong model that runs. A tensor of
another shape makes it print a report table of its own and then fail, so the harness's line came
after a table, or a traceback. A truncated safetensors file fails deep inside safetensors. Here a
model plugin reads the safetensors headers (shapes and dtypes, no tensor data), compares them with
the module built from the configuration, and refuses what does not fit in one line naming each
key with the expected and the found shape or dtype; then it loads with transformers' own logging
held back (``quiet_transformers``) and reports what transformers found missing or unexpected
(``check_loading_info``) itself.

Shared by every model plugin (BLIP, CLIP); imports torch lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError

_SAFETENSORS_FLOATS = {"F64", "F32", "F16", "BF16"}
_SHOWN = 8


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (huggingface_hub's validation errors span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def first_names(names: Iterable[str], limit: int = _SHOWN) -> str:
    """Up to ``limit`` names and how many more, so an error stays one readable line."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return f"{shown} (and {len(names) - limit} more)" if len(names) > limit else shown


def _is_float(dtype: Any) -> bool:
    """A ``torch.dtype`` or a safetensors dtype name (``F32``, ``I64``, ``F8_E4M3``...)."""
    if isinstance(dtype, str):
        return dtype in _SAFETENSORS_FLOATS or dtype.startswith("F8")
    return dtype.is_floating_point


_SAFETENSORS_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        return _SAFETENSORS_NAMES.get(dtype, dtype)
    return str(dtype).removeprefix("torch.")


def tensor_problems(expected: Mapping[str, Any], found: Mapping[str, tuple[Sequence[int], Any]]) -> list[str]:
    """Keys present in both whose shape differs, or whose kind of dtype differs (floating point
    versus integer or bool): ``"k: shape (256, 127), expected (256, 128)"``. ``expected`` maps keys
    to tensors (a module's ``state_dict()``, meta tensors are fine); ``found`` to (shape, dtype).
    A float of another width (fp16 in a file, fp32 in the model) is a lossless cast and passes."""
    problems = []
    for key, tensor in expected.items():
        if key not in found:
            continue
        shape, dtype = found[key]
        if tuple(shape) != tuple(tensor.shape):
            problems.append(f"{key}: shape {tuple(shape)}, expected {tuple(tensor.shape)}")
        elif _is_float(dtype) != tensor.dtype.is_floating_point:
            kind = "floating-point" if tensor.dtype.is_floating_point else "integer"
            problems.append(f"{key}: dtype {_dtype_name(dtype)}, expected {kind} ({_dtype_name(tensor.dtype)})")
    return problems


def refuse_misfits(expected: Mapping[str, Any], found: Mapping[str, tuple[Sequence[int], Any]],
                   source: str, target: str) -> None:
    """Raise ``ModelLoadError`` naming every tensor of ``found`` that does not fit ``expected``."""
    problems = tensor_problems(expected, found)
    if problems:
        raise ModelLoadError(
            f"{source}: tensors do not fit {target} (refused, not cast or resized): {first_names(problems)}"
        )


def safetensors_layout(files: Iterable[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype name) from the headers of safetensors files; a file that cannot be read
    (truncated, not safetensors) is named."""
    from safetensors import safe_open

    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    piece = handle.get_slice(key)
                    layout[key] = (tuple(piece.get_shape()), piece.get_dtype())
        except Exception as exc:  # safetensors raises its own SafetensorError for a damaged file
            raise ModelLoadError(f"{file}: cannot be read as safetensors (truncated or another format: {exc})") from exc
    return layout


def check_safetensors(module_class: Any, config: Any, files: Sequence[Path], source: str) -> None:
    """Compare the safetensors ``files`` with ``module_class(config)`` built on the meta device
    (no memory, no init), before ``from_pretrained`` may cast or print."""
    if not files:
        return
    import torch

    layout = safetensors_layout(files)
    with torch.device("meta"):
        expected = module_class(config).state_dict()
    refuse_misfits(expected, layout, source, module_class.__name__)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hold back transformers' own load report (tables of missing, unexpected or mismatched keys)
    while loading: the harness reports them itself as one line, which would otherwise come after
    the table."""
    from transformers.utils import logging as transformers_logging

    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(previous)


def check_loading_info(info: Mapping[str, Any], source: str, target: str) -> None:
    """Refuse a ``from_pretrained(..., output_loading_info=True)`` load that left keys missing or
    unexpected, or sizes mismatched: a half-loaded model must never run."""
    problems = [
        f"{label} {first_names(sorted(map(str, info.get(key) or ())))}"
        for key, label in (("missing_keys", "missing keys"), ("unexpected_keys", "unexpected keys"),
                           ("mismatched_keys", "shape mismatches"))
        if info.get(key)
    ]
    if info.get("error_msgs"):
        problems.append(first_names(map(str, info["error_msgs"])))
    if problems:
        raise ModelLoadError(f"{source}: weights do not fit {target}: {'; '.join(problems)}")
