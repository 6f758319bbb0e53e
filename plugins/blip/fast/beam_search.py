"""BLIP's text-decoder beam search with every cache computed once and kept in place.

Why: through transformers' ``generate`` each image's 577 tokens are repeated for every beam and
projected to cross-attention keys and values per beam, the self-attention cache grows by
concatenation every step, and every step re-enters the generic decoding machinery. Here each
image's (or question's) keys and values are projected once and shared by its beams (rows of
cross-attention are independent, so the beams of one image are laid side by side along the
query axis of one attention call), the self-attention keys and values live in one preallocated
tensor that beam reordering gathers in place, and the prompt is run once per image, not per beam.

The search itself is transformers' beam search step for step, so the chosen captions are the
same: log-softmax in float32, then the repetition penalty on log-probabilities (the prompt counts
as seen) and the minimum length (``[SEP]`` banned); the best ``2 * beams`` continuations over all
beams; a continuation that ends with ``[SEP]`` becomes a finished hypothesis when it ranks among
the first ``beams``; the open beams are the best ``beams`` that did not end; an item stops when
no open beam can beat its worst finished hypothesis (``early_stopping=False``). How a finished
hypothesis is scored, and when an item stops, follows one of two versions of transformers
(``length_penalty`` 1 in both):

- ``blip``, transformers 4.15 (``generation_beam_search.py``), which BLIP ran: a hypothesis
  ending at a step that starts from ``L`` tokens (prompt and ``[DEC]`` included) scores its
  summed log-probability, end token included, divided by ``L``; the item is done when its
  ``beams`` finished hypotheses are all at least the best continuation's score (ended or not)
  divided by ``L``; at the maximum length the open beams of an item not yet done are finished
  with their score divided by the maximum length.
- ``generated``, transformers 5: divided by the number of generated tokens, end token included;
  done against the best open beam over the same count; at the maximum length the first ``beams``
  continuations are finished like ended ones.

With a 4-token prompt BLIP's rule favours shorter captions. Nucleus sampling and single-beam
search stay with ``generate``.

Every parameter is read from transformers' ``BlipTextLMHeadModel`` (its ``bert`` and ``cls``).
Inference only; precision is the caller's autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness_plugins.blip.fast.itm import image_keys_values, merge_heads, split_heads

FINISHED_PENALTY = -1.0e9
"""The score transformers adds to rule a continuation out; the same constant keeps ties identical."""


@dataclass(frozen=True)
class BeamSettings:
    """What a beam search needs beyond the model: lengths count the prompt, as BLIP's do."""

    num_beams: int
    max_length: int
    min_length: int
    eos_token_id: int
    pad_token_id: int
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    length_normalization: str = "blip"
    """``blip`` (transformers 4.15) or ``generated`` (transformers 5); see the module."""


class DecoderState:
    """The decoder's caches for ``rows`` sequences: self-attention keys and values of every layer
    in one tensor (layers, 2, rows, heads, max_length, d), and the encoder's keys and values per
    item (shared by that item's beams)."""

    def __init__(
        self,
        decoder: nn.Module,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        max_length: int,
    ) -> None:
        self.decoder = decoder
        layers = decoder.bert.encoder.layer
        self.cross = [image_keys_values(layer.crossattention, encoder_states) for layer in layers]
        self.cross_mask = None if encoder_mask is None or bool(encoder_mask.all()) else encoder_mask.bool()[:, None, None, :]
        attention = layers[0].attention.self
        self.head_dim = attention.attention_head_size
        shape = (len(layers), 2, len(encoder_states), attention.num_attention_heads, max_length, self.head_dim)
        self.self_cache = encoder_states.new_empty(shape, dtype=self.cross[0][0].dtype)
        self.length = 0

    def expand(self, beams: int) -> None:
        """Give every item ``beams`` identical rows (after the prompt, which runs once per item)."""
        self.self_cache = self.self_cache.repeat_interleave(beams, dim=2)

    def reorder(self, rows: torch.Tensor) -> None:
        """Row ``i`` continues from row ``rows[i]`` (beam search's survivors)."""
        self.self_cache = self.self_cache.index_select(2, rows)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (rows, vocab) after feeding ``input_ids`` (rows, T) at the current length."""
        bert = self.decoder.bert
        start, steps = self.length, input_ids.shape[1]
        hidden = bert.embeddings(input_ids=input_ids, cache_length=start)
        items = len(self.cross[0][0])
        for number, layer in enumerate(bert.encoder.layer):
            hidden = self._self_attention(number, layer.attention, hidden, start)
            hidden = self._cross_attention(layer.crossattention, hidden, *self.cross[number], items)
            hidden = layer.feed_forward_chunk(hidden)
        self.length = start + steps
        return self.decoder.cls(hidden[:, -1]).float()

    def _self_attention(self, number: int, attention: nn.Module, hidden: torch.Tensor, start: int) -> torch.Tensor:
        projections = attention.self
        end = start + hidden.shape[1]
        cache = self.self_cache[number]
        cache[0, :, :, start:end] = split_heads(projections.key(hidden), self.head_dim)
        cache[1, :, :, start:end] = split_heads(projections.value(hidden), self.head_dim)
        context = F.scaled_dot_product_attention(
            split_heads(projections.query(hidden), self.head_dim),
            cache[0, :, :, :end],
            cache[1, :, :, :end],
            is_causal=start == 0 and end > 1,
        )
        return attention.output(merge_heads(context), hidden)

    def _cross_attention(
        self, attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, items: int
    ) -> torch.Tensor:
        rows, steps, width = hidden.shape
        queries = attention.self.query(hidden).reshape(items, rows // items * steps, width)
        context = F.scaled_dot_product_attention(
            split_heads(queries, self.head_dim), keys, values, attn_mask=self.cross_mask
        )
        return attention.output(merge_heads(context).reshape(rows, steps, width), hidden)


def _penalise_repeats(log_probs: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty on log-probabilities: a seen token's (negative) score is
    multiplied by ``penalty`` (divided where positive)."""
    scores = log_probs.gather(1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return log_probs.scatter(1, seen, scores)


def _keep_best(
    kept: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    sequences: torch.Tensor,
    scores: torch.Tensor,
    offered: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each item's best ``beams`` finished hypotheses after offering the ``offered`` rows of
    ``sequences`` (items, rows, max_length) with their normalised ``scores`` (items, rows).

    ``kept`` is (sequences, scores, is_finished) with ``beams`` slots per item, best first; an
    empty slot scores ``FINISHED_PENALTY``, and a row not offered ranks below every slot.
    """
    kept_sequences, kept_scores, kept_finished = kept
    beams = kept_scores.shape[1]
    merged_scores = torch.cat((kept_scores, torch.where(offered, scores, 2 * FINISHED_PENALTY)), dim=1)
    best = merged_scores.topk(beams)[1]
    sequences = torch.cat((kept_sequences, sequences), dim=1).gather(1, best[:, :, None].expand(-1, -1, sequences.shape[2]))
    return sequences, merged_scores.gather(1, best), torch.cat((kept_finished, offered), dim=1).gather(1, best)


@torch.inference_mode()
def beam_search(
    decoder: nn.Module,
    prompt_ids: torch.Tensor,
    encoder_states: torch.Tensor,
    encoder_mask: torch.Tensor | None,
    settings: BeamSettings,
) -> torch.Tensor:
    """The best finished sequence of each item, (B, max_length), prompt included, padded with
    ``pad_token_id``. ``prompt_ids`` (B, P) are the same length for every item (BLIP's prompts
    are); ``encoder_states`` (B, L, E) with ``encoder_mask`` (B, L) or None for all-attended."""
    items, prompt_length = prompt_ids.shape
    beams, max_length, device = settings.num_beams, settings.max_length, prompt_ids.device
    keep = 2 * beams
    state = DecoderState(decoder, encoder_states, encoder_mask, max_length)
    log_probs = F.log_softmax(state.logits(prompt_ids), dim=-1).repeat_interleave(beams, dim=0)
    state.expand(beams)

    running = torch.full((items, beams, max_length), settings.pad_token_id, dtype=torch.long, device=device)
    running[:, :, :prompt_length] = prompt_ids[:, None]
    running_scores = torch.zeros(items, beams, device=device)
    running_scores[:, 1:] = FINISHED_PENALTY
    finished = running.clone()
    finished_scores = torch.full((items, beams), FINISHED_PENALTY, device=device)
    is_finished = torch.zeros(items, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(items, 1, dtype=torch.bool, device=device)
    in_first_beams = torch.arange(keep, device=device) < beams
    item_offset = torch.arange(items, device=device)[:, None] * beams

    blip_lengths = settings.length_normalization == "blip"
    for length in range(prompt_length, max_length):
        if length > prompt_length:
            log_probs = F.log_softmax(state.logits(running[:, :, length - 1].reshape(-1, 1)), dim=-1)
        if settings.repetition_penalty != 1.0:
            log_probs = _penalise_repeats(log_probs, running[:, :, :length].reshape(-1, length), settings.repetition_penalty)
        if length < settings.min_length:
            log_probs[:, settings.eos_token_id] = -float("inf")
        vocab = log_probs.shape[-1]
        totals = (log_probs.view(items, beams, vocab) + running_scores[:, :, None]).view(items, -1)
        top_scores, top_index = totals.topk(keep)
        source = top_index // vocab
        candidates = running.gather(1, source[:, :, None].expand(-1, -1, max_length))
        candidates[:, :, length] = top_index % vocab
        is_eos = candidates[:, :, length] == settings.eos_token_id
        last = length + 1 >= max_length

        survivors = (top_scores + is_eos.float() * FINISHED_PENALTY).topk(beams)[1]
        running = candidates.gather(1, survivors[:, :, None].expand(-1, -1, max_length))
        running_scores = top_scores.gather(1, survivors)

        if blip_lengths:
            # 4.15: over the sequence before the end token; done against the best continuation
            ends, divisor, best_open = is_eos, length, top_scores[:, :1]
        else:
            ends, divisor, best_open = is_eos | last, length + 1 - prompt_length, running_scores[:, :1]
        scale = divisor**settings.length_penalty
        finished, finished_scores, is_finished = _keep_best(
            (finished, finished_scores, is_finished), candidates, top_scores / scale,
            ends & in_first_beams[None] & improvable,
        )
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], FINISHED_PENALTY)
        improvable = improvable & (best_open / scale > worst_finished).any(dim=-1, keepdim=True)
        if last and blip_lengths:
            # 4.15 finalises the open beams of an item not done, over the whole sequence
            finished, finished_scores, is_finished = _keep_best(
                (finished, finished_scores, is_finished), running,
                running_scores / max_length**settings.length_penalty, improvable.expand(-1, beams),
            )
        if last or not bool(improvable.any()):
            break
        state.reorder((source.gather(1, survivors) + item_offset).view(-1))
    return finished[:, 0]
