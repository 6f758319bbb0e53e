"""Decoding settings for BLIP's text decoder, shared by captioning and generative VQA.

Lengths count every token the decoder holds, the BOS and the prompt included, as BLIP passes them
to ``generate`` (transformers counts ``max_length``/``min_length`` the same way for a decoder-only
model). ``[SEP]`` ends a sequence.
"""

from __future__ import annotations

from typing import Any

from harness.capabilities import GenerationSettings

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
