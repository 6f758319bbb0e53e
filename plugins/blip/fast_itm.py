"""BLIP's ITM forward with each image's cross-attention keys and values computed once.

Why: BLIP's re-rank pairs every image with many texts (k = 256 on COCO). transformers' text
encoder takes the image tokens per pair, so every pair projects the same 577 image tokens to keys
and values in every layer: at BLIP-base size that is 16.3 of a pair's 24.1 GFLOP. Here those
projections run once per distinct image of a batch, and the texts of one image are laid side by
side along the query axis of a single attention call. Rows of cross-attention are independent of
one another and image tokens are never padded, so this is the same arithmetic as the reference,
only without the repeats. Attention runs through ``scaled_dot_product_attention`` (fused kernels
on GPU); the text's padding is masked in self-attention as in the reference. In the last layer
only the first token, the one ``itm_head`` reads, goes past self-attention.

Every parameter is read from the transformers modules (``BlipTextModel`` and its layers); the
linear layers, LayerNorms and activation are called as they are, only the attention products are
computed here. Inference only: dropout is not applied. Precision is the caller's (BLIP's models
run this under their autocast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class QueryLayout:
    """Where each text's queries sit when texts are packed per image.

    The texts go into a grid of ``rows`` x ``width`` slots; row ``r`` attends to image
    ``row_image[r]`` and text ``i`` occupies slot ``slot[i]``. An image with more than ``width``
    texts spans several rows (which share its keys and values by indexing), so a batch with one
    popular image and many rare ones is not padded to the popular image's count.
    """

    slot: torch.Tensor
    row_image: torch.Tensor
    width: int
    one_row_per_image: bool
    """Row ``r`` is image ``r``: keys and values need no indexing."""

    @property
    def rows(self) -> int:
        return len(self.row_image)


def pack_by_image(image_index: torch.Tensor, num_images: int) -> QueryLayout:
    """The layout for texts whose images are ``image_index`` (N,), in any order.

    ``width`` is the mean number of texts per image present, so the grid has at most about twice
    as many slots as texts, and at most twice as many rows as distinct images.
    """
    counts = torch.bincount(image_index, minlength=num_images)
    present = int((counts > 0).sum())
    width = max(1, -(-len(image_index) // max(1, present)))
    order = torch.argsort(image_index, stable=True)
    sorted_images = image_index[order]
    first_of_image = torch.cumsum(counts, 0) - counts
    rank_in_image = torch.arange(len(order), device=order.device) - first_of_image[sorted_images]
    rows_of_image = (counts + width - 1) // width
    first_row = torch.cumsum(rows_of_image, 0) - rows_of_image
    slot = torch.empty_like(order)
    slot[order] = (first_row[sorted_images] + rank_in_image // width) * width + rank_in_image % width
    row_image = torch.repeat_interleave(torch.arange(num_images, device=counts.device), rows_of_image)
    return QueryLayout(slot=slot, row_image=row_image, width=width, one_row_per_image=bool((rows_of_image == 1).all()))


def split_heads(states: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, S, heads * d) -> (B, heads, S, d)."""
    return states.unflatten(-1, (-1, head_dim)).transpose(1, 2)


def merge_heads(context: torch.Tensor) -> torch.Tensor:
    """(B, heads, S, d) -> (B, S, heads * d)."""
    return context.transpose(1, 2).flatten(2)


def self_attention(
    attention: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor, first_only: bool
) -> torch.Tensor:
    """One ``BlipTextAttention`` over the text itself. ``key_mask`` (N, 1, 1, T) is True where a
    token may be attended; with ``first_only`` only the first token's output is computed."""
    projections = attention.self
    head_dim = projections.attention_head_size
    queries = hidden[:, :1] if first_only else hidden
    context = F.scaled_dot_product_attention(
        split_heads(projections.query(queries), head_dim),
        split_heads(projections.key(hidden), head_dim),
        split_heads(projections.value(hidden), head_dim),
        attn_mask=key_mask,
    )
    return attention.output(merge_heads(context), queries)


def image_keys_values(attention: nn.Module, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-attention keys and values of each distinct image, (U, heads, L, d) each."""
    projections = attention.self
    head_dim = projections.attention_head_size
    return split_heads(projections.key(image_tokens), head_dim), split_heads(projections.value(image_tokens), head_dim)


def cross_attention(
    attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, layout: QueryLayout
) -> torch.Tensor:
    """One ``BlipTextAttention`` from the texts (N, T, H) to their images' keys and values, which
    are indexed by ``layout.row_image``; image tokens are all attended, as BLIP's mask of ones says."""
    projections = attention.self
    head_dim = projections.attention_head_size
    length = hidden.shape[1]
    queries = projections.query(hidden)
    grid = queries.new_zeros(layout.rows * layout.width, length, queries.shape[-1])
    grid[layout.slot] = queries
    grid = grid.view(layout.rows, layout.width * length, -1)
    if not layout.one_row_per_image:
        keys, values = keys[layout.row_image], values[layout.row_image]
    context = F.scaled_dot_product_attention(split_heads(grid, head_dim), keys, values)
    context = merge_heads(context).reshape(layout.rows * layout.width, length, -1)[layout.slot]
    return attention.output(context, hidden)


def itm_hidden(
    text_model: nn.Module,
    image_tokens: torch.Tensor,
    image_index: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """The last hidden state of the first token (N, H) of ``BlipTextModel`` in ITM mode.

    ``image_tokens`` (U, L, E) are the distinct images' ViT tokens, ``image_index`` (N,) each
    text's image, ``input_ids`` / ``attention_mask`` (N, T) the texts with ``[ENC]`` first.
    """
    layout = pack_by_image(image_index, len(image_tokens))
    key_mask = attention_mask.bool()[:, None, None, :]
    hidden = text_model.embeddings(input_ids=input_ids)
    layers = text_model.encoder.layer
    for number, layer in enumerate(layers):
        hidden = self_attention(layer.attention, hidden, key_mask, first_only=number == len(layers) - 1)
        keys, values = image_keys_values(layer.crossattention, image_tokens)
        hidden = cross_attention(layer.crossattention, hidden, keys, values, layout)
        hidden = layer.feed_forward_chunk(hidden)
    return hidden[:, 0]


def itm_logits(
    module: nn.Module,
    image_tokens: torch.Tensor,
    image_index: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """(N,) "match" logits of a ``BlipForImageTextRetrieval`` (``text_encoder`` + ``itm_head``)."""
    hidden = itm_hidden(module.text_encoder, image_tokens, image_index, input_ids, attention_mask)
    return module.itm_head(hidden)[:, 1]
