"""The decoder's beam search (``beam_search.py``).

With ``length_normalization="generated"`` it must choose what transformers 5's ``generate`` chooses
on the same tiny BLIP text decoder, in fp32, token for token. The decoder is random, but the logit
bias of ``[SEP]`` is raised so that hypotheses end at many different lengths, which is where beam
search's bookkeeping (finished hypotheses, length normalisation, the early-stop heuristic)
decides the outcome.

With ``"blip"`` (transformers 4.15, BLIP's rule) there is no ``generate`` to compare with, so a
decoder whose next-token distribution depends only on the previous token (a bigram table set
through its weights) gives hypotheses whose scores are worked out by hand.
"""

from __future__ import annotations

import math

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
        settings.num_beams, settings.max_length, settings.min_length, SEP, PAD, settings.repetition_penalty,
        length_normalization="generated"))
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


# -- BLIP's (transformers 4.15) length normalisation against hand-computed scores ------------------

BIGRAM_VOCAB = 10
BIGRAM = {
    2: {4: 0.55, 5: 0.45},  # the prompt's last token
    4: {SEP: 0.5, 9: 0.3, 8: 0.2},
    5: {6: 0.7, 9: 0.3},
    6: {SEP: 0.6, 9: 0.4},
}
"""Next-token probabilities after each token; every other token goes to ``[SEP]``, and every
token not listed gets a logit of -30 (never chosen)."""
BIGRAM_PROMPT = [BOS, 2, 2, 2]
"""Four tokens, as BLIP's "[DEC] a picture of"."""


def bigram_logits() -> torch.Tensor:
    table = torch.full((BIGRAM_VOCAB, BIGRAM_VOCAB), -30.0, dtype=torch.float64)
    table[:, SEP] = 0.0
    for previous, following in BIGRAM.items():
        table[previous, SEP] = -30.0
        for token, probability in following.items():
            table[previous, token] = math.log(probability)
    return table


@pytest.fixture(scope="module")
def bigram_decoder() -> torch.nn.Module:
    """A real BLIP text decoder whose logits are ``bigram_logits()[previous token]``: position
    embeddings and every residual branch are zeroed, so a position's hidden state depends on its
    token only, and the output layer is solved to map those states to the table."""
    config = BlipConfig(
        vision_config={"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
        text_config={"vocab_size": BIGRAM_VOCAB, "hidden_size": 48, "encoder_hidden_size": WIDTH,
                     "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4,
                     "max_position_embeddings": 64, "bos_token_id": BOS, "sep_token_id": SEP, "pad_token_id": PAD},
    )
    torch.manual_seed(0)
    decoder = BlipForConditionalGeneration(config).eval().text_decoder
    with torch.no_grad():
        decoder.bert.embeddings.position_embeddings.weight.zero_()
        for layer in decoder.bert.encoder.layer:
            for branch in (layer.attention.output.dense, layer.crossattention.output.dense, layer.output.dense):
                branch.weight.zero_()
                branch.bias.zero_()
        tokens = torch.arange(BIGRAM_VOCAB)[:, None]
        hidden = decoder.bert(input_ids=tokens, encoder_hidden_states=torch.zeros(BIGRAM_VOCAB, 2, WIDTH)).last_hidden_state
        features = decoder.cls.predictions.transform(hidden[:, 0]).double()
        weight = torch.linalg.lstsq(features, bigram_logits()).solution.T
        decoder.cls.predictions.decoder.weight = torch.nn.Parameter(weight.float())  # untied from the embeddings
        decoder.cls.predictions.decoder.bias.zero_()
    return decoder


def bigram_search(decoder, max_length: int, rule: str) -> list[int]:
    states = torch.zeros(1, 2, WIDTH)
    settings = BeamSettings(2, max_length, 0, SEP, PAD, length_normalization=rule)
    return trim([t for t in beam_search(decoder, torch.tensor([BIGRAM_PROMPT]), states, None, settings)[0].tolist()
                 if t != PAD])


def test_the_bigram_decoder_follows_its_table(bigram_decoder) -> None:
    sequence = torch.tensor([BIGRAM_PROMPT + [5, 6, 9, SEP]])
    with torch.no_grad():
        log_probs = bigram_decoder(input_ids=sequence, encoder_hidden_states=torch.zeros(1, 2, WIDTH)).logits.log_softmax(-1)
    expected = bigram_logits().log_softmax(-1)[sequence[0, :-1]]
    assert torch.allclose(log_probs[0, :-1].double(), expected, atol=1e-4)


# Beam search with 2 beams from the prompt (length 4); log-probabilities: ln .55 = -0.598,
# ln .45 = -0.799, ln .5 = -0.693, ln .3 = -1.204, ln .2 = -1.609, ln .7 = -0.357, ln .6 = -0.511,
# ln .4 = -0.916.
# step from 4 tokens: open beams [4] -0.598 and [5] -0.799.
# step from 5 tokens: candidates [5 6] -1.155, [4 SEP] -1.291, [4 9] -1.802, [5 9] -2.003.
#   [4 SEP] finishes: 4.15 scores it -1.291 / 5 = -0.258 (5 tokens before [SEP]);
#   transformers 5 -1.291 / 2 = -0.645 (2 generated tokens). Open: [5 6], [4 9].
# step from 6 tokens: candidates [5 6 SEP] -1.666, [4 9 SEP] -1.802, [5 6 9] -2.071, ...
#   4.15: -1.666 / 6 = -0.278 and -1.802 / 6 = -0.300; the best two kept are [4 SEP] -0.258
#   and [5 6 SEP] -0.278, and the worst, -0.278, is not below the best continuation
#   -1.666 / 6: done. Winner [4 SEP].
#   transformers 5: -1.666 / 3 = -0.555 and -1.802 / 3 = -0.601 both beat [4 SEP] -0.645.
#   Winner [5 6 SEP].
def test_blip_and_generated_rules_pick_different_winners(bigram_decoder) -> None:
    assert bigram_search(bigram_decoder, 10, "blip") == BIGRAM_PROMPT + [4, SEP]
    assert bigram_search(bigram_decoder, 10, "generated") == BIGRAM_PROMPT + [5, 6, SEP]


# With a maximum length of 6 the step from 5 tokens is the last: 4.15 finishes [4 SEP] with
# -1.291 / 5 = -0.258 and is not done (one hypothesis for two beams), so it finalises the open
# beams over the whole 6 tokens: [5 6] -1.155 / 6 = -0.193 and [4 9] -1.802 / 6 = -0.300.
# [5 6] wins, without an end token. (Not finalising them would leave [4 SEP].)
def test_blip_rule_finalises_open_beams_at_the_maximum_length(bigram_decoder) -> None:
    assert bigram_search(bigram_decoder, 6, "blip") == BIGRAM_PROMPT + [5, 6]


def test_decode_uses_blip_rule_by_default(bigram_decoder) -> None:
    prompt, states, mask = torch.tensor([BIGRAM_PROMPT]), torch.zeros(1, 2, WIDTH), torch.ones(1, 2, dtype=torch.long)
    default = GenerationSettings(num_beams=2, max_length=10, min_length=0)
    generated = GenerationSettings(num_beams=2, max_length=10, min_length=0, length_normalization="generated")
    with torch.inference_mode():
        assert trim(decode(bigram_decoder, prompt, states, mask, default, Ids)[0].tolist()) == BIGRAM_PROMPT + [4, SEP]
        assert trim(decode(bigram_decoder, prompt, states, mask, generated, Ids)[0].tolist()) == BIGRAM_PROMPT + [5, 6, SEP]
    with pytest.raises(ValueError, match="length_normalization must be one of blip, generated"):
        GenerationSettings(length_normalization="tf4")
