"""Decoding for BLIP's text decoder, shared by captioning and generative VQA.

Lengths count every token the decoder holds, the BOS and the prompt included, as BLIP passes them
to ``generate`` (transformers counts ``max_length``/``min_length`` the same way for a decoder-only
model). ``[SEP]`` ends a sequence. Beam search (BLIP's protocol) runs through
``beam_search.py``, which chooses what transformers 4.15's ``generate`` chose for BLIP
(``length_normalization="blip"``) or what transformers 5's chooses (``"generated"``) at a
fraction of the cost; nucleus sampling and single-beam search go through ``generate``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.capabilities import GenerationSettings
from harness_plugins.blip.fast.beam_search import BeamSettings, beam_search

SAMPLING_TOP_K = 50
"""BLIP's nucleus sampling ran with the top-k of 50 that transformers applied by default then;
transformers 5 no longer defaults to it, so it is passed explicitly."""


def decoding_kwargs(settings: GenerationSettings, tokenizer: Any) -> dict[str, Any]:
    """``generate`` keyword arguments: beam search, or nucleus sampling when ``settings.sample``."""
    common = {
        "max_length": settings.max_length,
        "min_length": settings.min_length,
        "repetition_penalty": settings.repetition_penalty,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "use_cache": True,
    }
    if settings.sample:
        return {**common, "do_sample": True, "top_p": settings.top_p, "top_k": SAMPLING_TOP_K, "num_beams": 1}
    return {**common, "do_sample": False, "num_beams": settings.num_beams}


def decode(
    decoder: nn.Module,
    prompt_ids: torch.Tensor,
    encoder_states: torch.Tensor,
    encoder_mask: torch.Tensor,
    settings: GenerationSettings,
    tokenizer: Any,
) -> torch.Tensor:
    """Token ids (B, <= max_length) continuing ``prompt_ids`` (B, P) over ``encoder_states``
    (B, L, E) whose attended positions ``encoder_mask`` (B, L) marks."""
    if settings.sample or settings.num_beams < 2:
        return decoder.generate(
            input_ids=prompt_ids,
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask,
            **decoding_kwargs(settings, tokenizer),
        )
    beams = BeamSettings(
        num_beams=settings.num_beams,
        max_length=settings.max_length,
        min_length=settings.min_length,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        repetition_penalty=settings.repetition_penalty,
        length_penalty=settings.length_penalty,
        length_normalization=settings.length_normalization,
    )
    return beam_search(decoder, prompt_ids, encoder_states, encoder_mask, beams)
