"""``clip-tiny``: a randomly initialised CLIP small enough for tests, built offline and identically
on every machine (fixed seed, hand-built tokenizer).

The tokenizer is a real CLIP byte-level BPE tokenizer with a tiny vocabulary: every byte (so any
text tokenises), a few dozen caption words as whole tokens, and the two special tokens last, as
in OpenAI's vocabulary, so the end-of-text id is the largest id.
"""

from __future__ import annotations

import torch
from tokenizers import pre_tokenizers
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

TINY_SEED = 0
TINY_IMAGE_SIZE = 64
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"

WHOLE_WORDS = (
    "a", "an", "the", "of", "on", "in", "at", "and", "with", "is", "are", "to", "picture", "photo",
    "image", "video", "man", "woman", "dog", "cat", "red", "green", "blue", "yellow", "circle",
    "square", "triangle", "star", "left", "right", "top", "bottom", "two", "three", "moves",
)
"""Words that become single tokens; any other text splits into smaller pieces or single bytes."""


def tiny_bpe(words: tuple[str, ...] = WHOLE_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merge list in CLIP's format.

    Each word is first split by the merges that already exist, then its pieces are joined left to
    right with new merges of lower priority. A word's encoding therefore never depends on merges
    added after it, so every word of ``words`` ends as one token.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in alphabet + [char + END_OF_WORD for char in alphabet]:
        vocab[token] = len(vocab)
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = _apply_merges(list(word[:-1]) + [word[-1] + END_OF_WORD], ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(ranks)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1], *pieces[2:]]
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, list(ranks)


def _apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """BPE encoding of one word: repeatedly merge the adjacent pair of best (lowest) rank."""
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks)), index) for index, pair in enumerate(zip(pieces, pieces[1:], strict=False))]
        rank, index = min(pairs)
        if rank == len(ranks):
            break
        pieces = [*pieces[:index], pieces[index] + pieces[index + 1], *pieces[index + 2 :]]
    return pieces


def tiny_clip_tokenizer() -> CLIPTokenizer:
    vocab, merges = tiny_bpe()
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_clip_config(tokenizer: CLIPTokenizer) -> CLIPConfig:
    """Two-layer, 32-wide text and vision towers at 64 px; token ids from ``tokenizer``."""
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": 16,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def tiny_clip_model(tokenizer: CLIPTokenizer) -> CLIPModel:
    """The same weights on every call: seeded with ``TINY_SEED`` without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return CLIPModel(tiny_clip_config(tokenizer))
