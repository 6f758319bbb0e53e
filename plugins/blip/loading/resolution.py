"""Running a ViT at another resolution than it was saved at, as BLIP does when it loads a checkpoint.

BLIP fine-tunes VQA at 480 px and the rest at 384 px; Hugging Face's VQA checkpoints were saved at
384. The patch grid of the position embeddings is resized bicubically once, at load time, so every
forward pass afterwards is an ordinary one at the protocol's resolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.errors import ConfigError


def patch_grid(image_size: int, patch_size: int) -> int:
    if image_size <= 0 or image_size % patch_size:
        raise ConfigError(f"image_size {image_size} is not a positive multiple of the ViT patch size {patch_size}")
    return image_size // patch_size


def interpolate_position_embedding(position_embedding: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, D) with the class token first -> (1, 1 + grid*grid, D): the patch positions
    resized bicubically (align_corners=False) as a g x g image, the class position kept."""
    patches = position_embedding.shape[1] - 1
    old_grid = math.isqrt(patches)
    if old_grid * old_grid != patches:
        raise ValueError(f"position embedding of {patches} patches is not a square grid")
    if old_grid == grid:
        return position_embedding
    dim = position_embedding.shape[-1]
    class_position, patch_positions = position_embedding[:, :1], position_embedding[:, 1:]
    as_image = patch_positions.reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2).float()
    resized = nn.functional.interpolate(as_image, size=(grid, grid), mode="bicubic", align_corners=False)
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(position_embedding.dtype)
    return torch.cat([class_position, resized], dim=1)


def set_image_size(vision_model: nn.Module, image_size: int) -> None:
    """Make a transformers ``BlipVisionModel`` run at ``image_size`` (its config follows)."""
    embeddings = vision_model.embeddings
    grid = patch_grid(image_size, embeddings.patch_size)
    if embeddings.position_embedding.shape[1] == grid * grid + 1:
        return
    resized = interpolate_position_embedding(embeddings.position_embedding.data, grid)
    embeddings.position_embedding = nn.Parameter(resized)
    embeddings.image_size = image_size
    embeddings.num_patches = grid * grid
    embeddings.num_positions = grid * grid + 1
    vision_model.config.image_size = image_size
