"""CLIP as a harness model: contrastive image and text embeddings (ITC) and nothing more.

CLIP has no image-text matching head, no text decoder and no pair classifier, so it implements
only ``ImagePreprocessor``, ``ImageEncoder``, ``VideoEncoder`` and ``ImageTextEmbedder``; the
registry refuses it for tasks that need more instead of faking a head. Retrieval with CLIP is
therefore the ITC ranking alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPModel, CLIPTokenizer

from harness.capabilities import TextFeatures, VisualFeatures
from harness.errors import ConfigError, ModelLoadError
from harness.specs import ModelRequest
from harness.weights_check import check_loading_info, check_safetensors, one_line, quiet_transformers
from harness_plugins.clip.preprocess import clip_preprocess
from harness_plugins.clip.tiny import TINY_SEED, tiny_clip_model, tiny_clip_tokenizer

DEFAULT_WEIGHTS = "openai/clip-vit-base-patch16"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class ClipEmbedder:
    """A transformers ``CLIPModel`` behind the harness capability protocols.

    ``image_size`` follows the run's protocol; when it differs from the checkpoint's resolution
    the position embeddings are interpolated. Texts are truncated to the protocol's
    ``max_text_tokens`` (when the task has one), never beyond CLIP's context length.
    """

    def __init__(
        self,
        model: CLIPModel,
        tokenizer: CLIPTokenizer,
        *,
        image_size: int,
        max_text_tokens: int | None,
        device: str,
        precision: str,
        weights_name: str,
        weights_files: Sequence[Path] = (),
    ) -> None:
        if precision not in _DTYPES:
            raise ConfigError(f"CLIP: precision {precision!r} is not one of {', '.join(_DTYPES)}")
        self.device = torch.device(device)
        self.dtype = _DTYPES[precision]
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        context_length = model.config.text_config.max_position_embeddings
        self.max_text_tokens = min(max_text_tokens or context_length, context_length)
        self.weights_name = weights_name
        self.weights_files = list(weights_files)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return clip_preprocess(images, self.image_size)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        """Projected CLS embeddings (normalised, float32) and the vision tower's last hidden state."""
        resized = pixels.shape[-1] != self.model.config.vision_config.image_size
        output = self.model.get_image_features(
            pixel_values=pixels.to(device=self.device, dtype=self.dtype),
            interpolate_pos_encoding=resized,
        )
        embeds = F.normalize(output.pooler_output.float(), dim=-1)
        return VisualFeatures(embeds=embeds, tokens=output.last_hidden_state)

    @torch.inference_mode()
    def encode_videos(self, frames: torch.Tensor) -> VisualFeatures:
        """Frames (B, F, 3, S, S): the mean of the frames' embeddings, re-normalised, and every
        frame's tokens concatenated, as BLIP pools video for zero-shot retrieval."""
        videos, count = frames.shape[:2]
        per_frame = self.encode_images(frames.flatten(0, 1))
        embeds = F.normalize(per_frame.embeds.view(videos, count, -1).mean(dim=1), dim=-1)
        tokens = per_frame.tokens.reshape(videos, count * per_frame.tokens.shape[1], -1)
        return VisualFeatures(embeds=embeds, tokens=tokens)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> TextFeatures:
        """Projected end-of-text embeddings (normalised, float32) and the padded token ids."""
        batch = self.tokenizer(
            list(texts), padding="longest", truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        ).to(self.device)
        output = self.model.get_text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        embeds = F.normalize(output.pooler_output.float(), dim=-1)
        return TextFeatures(embeds=embeds, input_ids=batch.input_ids, attention_mask=batch.attention_mask)


def resolve_local_weights(weights: str) -> Path:
    """A local folder, or a Hugging Face id already in the local cache; never downloads."""
    folder = Path(weights).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(weights, local_files_only=True))
    except Exception as exc:
        raise ModelLoadError(
            f"CLIP weights {weights!r} are neither a local folder nor in the Hugging Face cache "
            f"({exc.__class__.__name__}); the harness never downloads: fetch them first "
            f"(e.g. `hf download {weights}`) or pass --weights /path/to/folder"
        ) from exc


def missing_clip_weights(request: ModelRequest) -> str | None:
    """The CLIP weights a run would load when they are not here, with the command that fetches
    them; checked before any weights load."""
    weights = request.weights or DEFAULT_WEIGHTS
    try:
        resolve_local_weights(weights)
    except ModelLoadError:
        return f"{weights}: `hf download {weights}`"
    return None


def weight_files(folder: Path) -> list[Path]:
    """The files that hold the weights, hashed into the result record's weights identity."""
    safetensors = sorted(folder.glob("*.safetensors"))
    return safetensors or sorted(folder.glob("pytorch_model*.bin"))


def build_clip(request: ModelRequest) -> ClipEmbedder:
    """Factory of the ``clip`` model: pretrained CLIP from a local folder or the offline cache."""
    weights = request.weights or DEFAULT_WEIGHTS
    from huggingface_hub.errors import StrictDataclassError
    from transformers import CLIPConfig

    folder = resolve_local_weights(weights)
    source = f"CLIP weights {weights!r} ({folder})"
    try:
        config = CLIPConfig.from_pretrained(folder, local_files_only=True)
        check_safetensors(CLIPModel, config, sorted(folder.glob("*.safetensors")), source)
        with quiet_transformers():
            model, info = CLIPModel.from_pretrained(folder, config=config, local_files_only=True, output_loading_info=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, RuntimeError, StrictDataclassError) as exc:
        raise ModelLoadError(f"{source} cannot be loaded: {one_line(exc)}") from exc
    check_loading_info(info, source, "CLIPModel")
    return _embedder(model, tokenizer, request, weights_name=weights, weights_files=weight_files(folder))


def build_clip_tiny(request: ModelRequest) -> ClipEmbedder:
    """Factory of ``clip-tiny``: random weights from a fixed seed, for tests and the toy suite."""
    tokenizer = tiny_clip_tokenizer()
    model = tiny_clip_model(tokenizer)
    return _embedder(model, tokenizer, request, weights_name=f"clip-tiny (random init, seed {TINY_SEED})")


def _embedder(model: CLIPModel, tokenizer: Any, request: ModelRequest, **weights: Any) -> ClipEmbedder:
    """The embedder at the request's resolution, text length, device and precision."""
    return ClipEmbedder(
        model,
        tokenizer,
        image_size=request.protocol.get("image_size", model.config.vision_config.image_size),
        max_text_tokens=request.protocol.get("max_text_tokens"),
        device=request.device,
        precision=request.precision,
        **weights,
    )
