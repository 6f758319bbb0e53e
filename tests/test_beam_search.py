"""The decoder's beam search (``beam_search.py``) against transformers' ``generate`` on the same
tiny BLIP text decoder, in fp32: the chosen sequences must be the same token for token.

The decoder is random, but the logit bias of ``[SEP]`` is raised so that hypotheses end at many
different lengths, which is where beam search's bookkeeping (finished hypotheses, length
normalisation, the early-stop heuristic) decides the outcome.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BlipConfig, BlipForConditionalGeneration

from harness.capabilities import GenerationSettings
from harness_plugins.blip.fast.beam_search import BeamSettings, beam_search
from harness_plugins.blip.fast.masking import honour_cross_attention_masks
from harness_plugins.blip.heads.generation import decode, decoding_kwargs

VOCAB, BOS, SEP, PAD = 90, 1, 3, 0
WIDTH, STATE_TOKENS = 40, 9


class Ids:
    """The three ids ``decoding_kwargs`` reads from a tokenizer."""

    sep_token_id, pad_token_id = SEP, PAD


@pytest.fixture(scope="module")
def decoder() -> torch.nn.Module:
    config = BlipConfig(
        vision_config={"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16, "initializer_range": 0.02},
        text_config={"vocab_size": VOCAB, "hidden_size": 48, "encoder_hidden_size": WIDTH, "intermediate_size": 96,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64,
                     "initializer_range": 0.3, "bos_token_id": BOS, "sep_token_id": SEP, "pad_token_id": PAD},
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    honour_cross_attention_masks(model)
    return model.text_decoder


def run_both(decoder, prompt, states, mask, settings: GenerationSettings) -> tuple[list[list[int]], list[list[int]]]:
    """(generate's sequences, beam_search's), each cut after its ``[SEP]`` and without padding."""
    with torch.inference_mode():
        expected = decoder.generate(input_ids=prompt, encoder_hidden_states=states, encoder_attention_mask=mask,
                                    **decoding_kwargs(settings, Ids))
    got = beam_search(decoder, prompt, states, mask, BeamSettings(
        settings.num_beams, settings.max_length, settings.min_length, SEP, PAD, settings.repetition_penalty))
    return [trim(row) for row in expected.tolist()], [trim(row) for row in got.tolist()]


def trim(row: list[int]) -> list[int]:
    return row[: row.index(SEP) + 1] if SEP in row else row


@pytest.mark.parametrize("sep_bias", [0.0, 2.0, 3.0, 4.0])
@pytest.mark.parametrize(("beams", "max_length", "min_length", "penalty"), [(3, 14, 5, 1.0), (3, 14, 5, 1.1), (4, 10, 2, 1.0)])
def test_same_sequences_as_generate(decoder, sep_bias, beams, max_length, min_length, penalty) -> None:
    generator = torch.Generator().manual_seed(int(sep_bias * 10) + beams)
    with torch.no_grad():
        decoder.cls.predictions.bias[SEP] = sep_bias
    prompt = torch.tensor([[BOS, 20, 21, 22]]).repeat(8, 1)
    states = torch.randn(8, STATE_TOKENS, WIDTH, generator=generator)
    settings = GenerationSettings(num_beams=beams, max_length=max_length, min_length=min_length,
                                  repetition_penalty=penalty)
    expected, got = run_both(decoder, prompt, states, torch.ones(8, STATE_TOKENS, dtype=torch.long), settings)
    assert got == expected
    if sep_bias >= 2.0:
        assert len({len(row) for row in expected}) > 1, "the [SEP] bias should make hypotheses end at different lengths"


def test_masked_encoder_states_as_generate(decoder) -> None:
    """VQA's decoder reads padded question states: the padding is masked in both."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        decoder.cls.predictions.bias[SEP] = 2.0
    states = torch.randn(6, STATE_TOKENS, WIDTH, generator=generator)
    mask = (torch.arange(STATE_TOKENS)[None] < torch.tensor([9, 3, 5, 9, 1, 7])[:, None]).long()
    settings = GenerationSettings(num_beams=3, max_length=10, min_length=1)
    expected, got = run_both(decoder, torch.full((6, 1), BOS), states, mask, settings)
    assert got == expected
    # and the mask matters: padding the states with other values changes nothing
    states[mask == 0] = 100.0
    _, again = run_both(decoder, torch.full((6, 1), BOS), states, mask, settings)
    assert again == got


def test_decode_routes_sampling_and_single_beam_to_generate(decoder) -> None:
    states = torch.randn(2, STATE_TOKENS, WIDTH, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, STATE_TOKENS, dtype=torch.long)
    prompt = torch.full((2, 1), BOS)
    greedy = GenerationSettings(num_beams=1, max_length=8, min_length=1)
    with torch.inference_mode():
        expected = decoder.generate(input_ids=prompt, encoder_hidden_states=states, encoder_attention_mask=mask,
                                    **decoding_kwargs(greedy, Ids))
        assert torch.equal(decode(decoder, prompt, states, mask, greedy, Ids), expected)
        torch.manual_seed(3)
        sampled = decode(decoder, prompt, states, mask, GenerationSettings(sample=True, max_length=8, min_length=1), Ids)
    assert sampled.shape[0] == 2 and int(sampled[0, 0]) == BOS
