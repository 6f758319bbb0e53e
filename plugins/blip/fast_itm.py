"""BLIP's ITM forward with each image's cross-attention keys and values computed once, on the
texts' real tokens only.

Why: BLIP's re-rank pairs every image with many texts (k = 256 on COCO). transformers' text
encoder takes the image tokens per pair, so every pair projects the same 577 image tokens to keys
and values in every layer: at BLIP-base size that is 16.3 of a pair's 24.1 GFLOP. Here those
projections run once per distinct image of a batch, and the queries of one image's texts are laid
side by side along the query axis of a single attention call. Rows of cross-attention are
independent of one another and image tokens are never padded, so this is the same arithmetic as
the reference, only without the repeats.

What remains per pair is linear layers over the text's tokens, and a batch of texts is padded to
its longest. Captions have a long tail (COCO's run from 8 words to over 30), so a batch of
thousands nearly always holds a long one and much of it would be padding. The texts' real tokens
are therefore packed one after another: every step that treats tokens one at a time (the linear
layers, LayerNorms, and the cross-attention, whose query rows are independent) runs on them
alone, and only the self-attention product puts each text's tokens back in its padded row, with
padding masked as in the reference. In the last layer only the first token, the one ``itm_head``
reads, goes past self-attention.

Every parameter is read from the transformers modules (``BlipTextModel`` and its layers); the
linear layers, LayerNorms and activation are called as they are, only the attention products are
computed here, through ``scaled_dot_product_attention`` (fused kernels on GPU). Inference only:
dropout is not applied. Precision is the caller's (BLIP's models run this under their autocast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class QueryLayout:
    """Where each query sits when queries are packed per image.

    A query is a text token, which attends to its text's image. The queries go into a grid of
    ``rows`` x ``width`` slots; row ``r`` attends to image ``row_image[r]`` and query ``i``
    occupies slot ``slot[i]``. An image with more than ``width`` queries spans several rows (which
    share its keys and values by indexing), so a batch with one popular image and many rare ones
    is not padded to the popular image's count.
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
    """The layout for queries whose images are ``image_index`` (Q,), in any order.

    ``width`` is the mean number of queries per image present, so the grid has at most about twice
    as many slots as queries, and at most twice as many rows as distinct images.
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


@dataclass(frozen=True)
class PackedTexts:
    """The real tokens of right-padded texts (N, T), one text after another, without padding."""

    real: torch.Tensor | None
    """Flat positions (into N * T) of the real tokens; None when no text is padded."""
    first: torch.Tensor
    """Packed position of each text's first token."""
    text: torch.Tensor
    """Text of each packed token."""
    texts: int
    length: int

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> PackedTexts:
        mask = attention_mask.bool()
        texts, length = mask.shape
        if not bool(mask[:, 0].all()):
            raise ValueError("fast ITM needs right-padded texts: the first token of every text must be a real one")
        numbers = torch.arange(texts, device=mask.device)
        if bool(mask.all()):
            return cls(None, numbers * length, numbers.repeat_interleave(length), texts, length)
        lengths = mask.sum(dim=1)
        real = mask.flatten().nonzero().squeeze(1)
        return cls(real, torch.cumsum(lengths, 0) - lengths, numbers.repeat_interleave(lengths), texts, length)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(N, T, H) -> (tokens, H)."""
        flat = padded.reshape(self.texts * self.length, -1)
        return flat if self.real is None else flat[self.real]

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """(tokens, H) -> (N, T, H), zeros where a text is padded."""
        if self.real is not None:
            flat = packed.new_zeros(self.texts * self.length, packed.shape[-1])
            flat[self.real] = packed
            packed = flat
        return packed.view(self.texts, self.length, -1)


def split_heads(states: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, S, heads * d) -> (B, heads, S, d)."""
    return states.unflatten(-1, (-1, head_dim)).transpose(1, 2)


def merge_heads(context: torch.Tensor) -> torch.Tensor:
    """(B, heads, S, d) -> (B, S, heads * d)."""
    return context.transpose(1, 2).flatten(2)


def self_attention(
    attention: nn.Module, hidden: torch.Tensor, packed: PackedTexts, key_mask: torch.Tensor, first_only: bool
) -> torch.Tensor:
    """One ``BlipTextAttention`` of each text over itself, on packed tokens (tokens, H).
    ``key_mask`` (N, 1, 1, T) is True where a token may be attended. With ``first_only`` only each
    text's first token is computed, and the result is (N, H)."""
    projections = attention.self
    head_dim = projections.attention_head_size
    residual = hidden[packed.first] if first_only else hidden
    queries = projections.query(residual)
    context = F.scaled_dot_product_attention(
        split_heads(queries[:, None] if first_only else packed.pad(queries), head_dim),
        split_heads(packed.pad(projections.key(hidden)), head_dim),
        split_heads(packed.pad(projections.value(hidden)), head_dim),
        attn_mask=key_mask,
    )
    context = merge_heads(context)
    return attention.output(context[:, 0] if first_only else packed.pack(context), residual)


def image_keys_values(attention: nn.Module, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-attention keys and values of each distinct image, (U, heads, L, d) each."""
    projections = attention.self
    head_dim = projections.attention_head_size
    return split_heads(projections.key(image_tokens), head_dim), split_heads(projections.value(image_tokens), head_dim)


def cross_attention(
    attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, layout: QueryLayout
) -> torch.Tensor:
    """One ``BlipTextAttention`` from queries (Q, H) to their images' keys and values, which are
    indexed by ``layout.row_image``; image tokens are all attended, as BLIP's mask of ones says."""
    projections = attention.self
    head_dim = projections.attention_head_size
    queries = projections.query(hidden)
    grid = queries.new_zeros(layout.rows * layout.width, queries.shape[-1])
    grid[layout.slot] = queries
    if not layout.one_row_per_image:
        keys, values = keys[layout.row_image], values[layout.row_image]
    context = F.scaled_dot_product_attention(split_heads(grid.view(layout.rows, layout.width, -1), head_dim), keys, values)
    context = merge_heads(context).reshape(layout.rows * layout.width, -1)[layout.slot]
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
    text's image, ``input_ids`` / ``attention_mask`` (N, T) the texts, right-padded, with
    ``[ENC]`` first.
    """
    packed = PackedTexts.of(attention_mask)
    key_mask = attention_mask.bool()[:, None, None, :]
    image_index = image_index.to(attention_mask.device)
    token_layout = pack_by_image(image_index[packed.text], len(image_tokens))
    first_token_layout = pack_by_image(image_index, len(image_tokens))
    hidden = packed.pack(text_model.embeddings(input_ids=input_ids))
    layers = text_model.encoder.layer
    for number, layer in enumerate(layers):
        last = number == len(layers) - 1
        hidden = self_attention(layer.attention, hidden, packed, key_mask, first_only=last)
        keys, values = image_keys_values(layer.crossattention, image_tokens)
        hidden = cross_attention(layer.crossattention, hidden, keys, values, first_token_layout if last else token_layout)
        hidden = layer.feed_forward_chunk(hidden)
    return hidden


def itm_head_logits(
    module: nn.Module,
    image_tokens: torch.Tensor,
    image_index: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """(N, 2) ITM head logits (no match, match) of a ``BlipForImageTextRetrieval``
    (``text_encoder`` + ``itm_head``)."""
    hidden = itm_hidden(module.text_encoder, image_tokens, image_index, input_ids, attention_mask)
    return module.itm_head(hidden)


def itm_logits(
    module: nn.Module,
    image_tokens: torch.Tensor,
    image_index: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """(N,) "match" logits of a ``BlipForImageTextRetrieval`` (``text_encoder`` + ``itm_head``)."""
    return itm_head_logits(module, image_tokens, image_index, input_ids, attention_mask)[:, 1]
