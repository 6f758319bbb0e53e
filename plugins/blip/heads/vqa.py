"""BLIP's VQA head: the question (``[ENC]`` first) cross-attends to the image tokens; the answer
decoder cross-attends to the question's states.

Two ways to answer, both BLIP's:
- ``answer``: beam search from the BOS ``[DEC]`` over the question states. BLIP's generate passes
  an all-ones mask, so its answers depend on how much padding the batch's longest question adds;
  here question padding is masked, so an answer is the same in any batch (and equals BLIP's
  whenever the question is not padded).
- ``rank_answers`` (BLIP's ``rank_answer``): the decoder's probability of each candidate's first
  token after BOS picks the top k candidates; each of those is scored by teacher forcing as the
  negative of its summed token loss with label smoothing (0.1 in BLIP's decoder loss), and the
  best one wins. The first-token probabilities only shortlist: they do not enter the final score
  (the first token's smoothed loss is already part of the sum).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.capabilities import GenerationSettings, VisualFeatures
from harness.specs import ModelRequest
from harness_plugins.blip.catalog import VQA
from harness_plugins.blip.heads.base import BlipModel
from harness_plugins.blip.heads.generation import decode
from harness_plugins.blip.loading.loader import LoadedBlip

DEFAULT_LABEL_SMOOTHING = 0.1
SCORED_SEQUENCES_PER_PASS = 256
"""Teacher-forced (question, answer) sequences per decoder pass; bounds the (N, T, vocab) logits."""


def first_token_shortlist(
    decoder: nn.Module,
    question_states: torch.Tensor,
    question_mask: torch.Tensor,
    answer_ids: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """(Q, k) indices of the answers whose first token the decoder finds most probable after BOS.

    ``answer_ids`` (A, T) start with BOS; column 1 is each answer's first token.
    """
    start = answer_ids[:1, :1].expand(question_states.shape[0], 1)
    logits = decoder(
        input_ids=start,
        encoder_hidden_states=question_states,
        encoder_attention_mask=question_mask,
        use_cache=False,
    ).logits[:, 0]
    first_token_probs = logits.float().softmax(dim=-1).index_select(1, answer_ids[:, 1])
    return first_token_probs.topk(min(k, answer_ids.shape[0]), dim=1).indices


def answer_scores(
    decoder: nn.Module,
    question_states: torch.Tensor,
    question_mask: torch.Tensor,
    answer_ids: torch.Tensor,
    answer_mask: torch.Tensor,
    candidates: torch.Tensor,
    pad_token_id: int,
    label_smoothing: float,
) -> torch.Tensor:
    """(Q, K) teacher-forced scores of answers ``candidates`` (Q, K) for each question: minus the
    sum over the answer's tokens (up to and including ``[SEP]``, padding excluded) of the
    label-smoothed cross-entropy of predicting each token from the ones before it."""
    num_questions, per_question = candidates.shape
    question_rows = torch.arange(num_questions, device=candidates.device).repeat_interleave(per_question)
    answer_rows = candidates.reshape(-1)
    scores = torch.empty(len(answer_rows), dtype=torch.float32, device=candidates.device)
    for start in range(0, len(answer_rows), SCORED_SEQUENCES_PER_PASS):
        rows = slice(start, start + SCORED_SEQUENCES_PER_PASS)
        mask = answer_mask[answer_rows[rows]]
        length = int(mask.sum(dim=1).max())
        ids, mask = answer_ids[answer_rows[rows]][:, :length], mask[:, :length]
        questions = question_rows[rows]
        logits = decoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=question_states[questions],
            encoder_attention_mask=question_mask[questions],
            use_cache=False,
        ).logits
        targets = ids.masked_fill(ids == pad_token_id, -100)[:, 1:]
        token_losses = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="none",
            label_smoothing=label_smoothing,
        )
        scores[rows] = -token_losses.view(len(ids), -1).sum(dim=1)
    return scores.view(num_questions, per_question)


class BlipVQAModel(BlipModel):
    """VisualQuestionAnswerer (plus the shared encoders); video QA passes frame tokens concatenated."""

    head = VQA

    def __init__(self, loaded: LoadedBlip, request: ModelRequest, image_size: int) -> None:
        super().__init__(loaded, request, image_size)
        self._answer_tokens: tuple[tuple[str, ...], torch.Tensor, torch.Tensor] | None = None

    # VisualQuestionAnswerer
    @torch.inference_mode()
    def answer(
        self, visual: VisualFeatures, questions: Sequence[str], settings: GenerationSettings
    ) -> list[str]:
        with self.autocast():
            states, question_mask = self.encode_questions(visual, questions)
            bos = torch.full((states.shape[0], 1), self.bos_token_id, dtype=torch.long, device=self.device)
            generated = decode(self.module.text_decoder, bos, states, question_mask, settings, self.tokenizer)
        return [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]

    @torch.inference_mode()
    def rank_answers(
        self, visual: VisualFeatures, questions: Sequence[str], answer_list: Sequence[str], k: int
    ) -> list[int]:
        if not answer_list:
            raise ValueError("rank_answers needs a non-empty answer list")
        answer_ids, answer_mask = self.answer_tokens(answer_list)
        smoothing = float(self.protocol.get("rank_label_smoothing", DEFAULT_LABEL_SMOOTHING))
        decoder = self.module.text_decoder
        with self.autocast():
            states, question_mask = self.encode_questions(visual, questions)
            shortlist = first_token_shortlist(decoder, states, question_mask, answer_ids, k)
            scores = answer_scores(
                decoder, states, question_mask, answer_ids, answer_mask, shortlist,
                self.tokenizer.pad_token_id, smoothing,
            )
        best = shortlist.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
        return best.cpu().tolist()

    @property
    def bos_token_id(self) -> int:
        return int(self.module.config.text_config.bos_token_id)

    def encode_questions(self, visual: VisualFeatures, questions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Question states (B, T, H) from the image-grounded text encoder, and the question mask."""
        tokens = self.on_device(visual.tokens)
        input_ids, attention_mask = self.tokenize(questions, self.max_text_tokens, enc_first=True)
        states = self.module.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=tokens,
            encoder_attention_mask=self.image_mask(tokens),
        ).last_hidden_state
        return states, attention_mask

    def answer_tokens(self, answer_list: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The answer list tokenised as BLIP does (BOS in place of ``[CLS]``, ``[SEP]`` kept, padded
        to the longest, never truncated); cached, since a run ranks against one list."""
        key = tuple(answer_list)
        if self._answer_tokens is None or self._answer_tokens[0] != key:
            encoded = self.tokenizer(list(key), padding="longest", return_tensors="pt")
            ids = encoded["input_ids"].to(self.device)
            ids[:, 0] = self.bos_token_id
            self._answer_tokens = (key, ids, encoded["attention_mask"].to(self.device))
        return self._answer_tokens[1], self._answer_tokens[2]
