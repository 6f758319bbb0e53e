"""BLIP's retrieval head: ITC embeddings, ITM scores, and VisDial candidates scored by ITM.

ITC: ``normalize(vision_proj(ViT CLS))`` against ``normalize(text_proj(text-only encoder CLS))``.
ITM: the text encoder with ``[ENC]`` as first token cross-attends to the image tokens; the score
is the "match" logit (``itm_head(...)[:, 1]``), as BLIP's re-ranking adds it to the ITC cosine; a
filter (CapFilt) thresholds the match probability, the softmax of both logits at "match".
VisDial reuses ITM on "caption, history, question, candidate" (BLIP released no VisDial model,
so the COCO retrieval checkpoint scores candidates zero-shot).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from harness.capabilities import DialogContext, TextFeatures, VisualFeatures
from harness_plugins.blip.catalog import RETRIEVAL
from harness_plugins.blip.fast import itm as fast_itm
from harness_plugins.blip.heads.base import BlipModel

DEFAULT_HISTORY_ROUNDS = 10


def dialog_text(context: DialogContext, candidate: str, history_rounds: int) -> str:
    """The text ITM reads for one VisDial candidate: caption, the last ``history_rounds``
    question-answer rounds, the question and the candidate answer, space-separated."""
    rounds = list(context.history)[-history_rounds:] if history_rounds > 0 else []
    parts = [context.caption, *(f"{question} {answer}" for question, answer in rounds), context.question, candidate]
    return " ".join(part.strip() for part in parts if part.strip())


def match_logit(logits: torch.Tensor) -> torch.Tensor:
    """(N, 2) ITM logits -> (N,) the "match" logit, which BLIP's re-ranking adds to the cosine."""
    return logits[:, 1]


def match_probability(logits: torch.Tensor) -> torch.Tensor:
    """(N, 2) ITM logits -> (N,) probability of "match" (softmax over both classes)."""
    return logits.softmax(dim=-1)[:, 1]


class BlipRetrievalModel(BlipModel):
    """ImageTextEmbedder, ImageTextMatcher, ImageTextMatchProbability, DialogAnswerRanker (plus
    the shared encoders)."""

    head = RETRIEVAL
    match_batch_size = 256
    """Pairs per text-encoder forward pass in ``match``."""
    fast_itm = True
    """ITM through ``fast_itm`` (each image's cross-attention keys and values computed once);
    False runs transformers' text encoder on the image tokens repeated per pair, the reference
    that the parity test and the benchmarks compare against."""

    def image_embeds(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        projected = self.module.vision_proj(tokens[:, 0]).float()
        return F.normalize(projected, dim=-1) if normalize else projected

    # ImageTextEmbedder
    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> TextFeatures:
        input_ids, attention_mask = self.tokenize(texts, self.max_text_tokens)
        with self.autocast():
            hidden = self.module.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            embeds = F.normalize(self.module.text_proj(hidden[:, 0]).float(), dim=-1)
        return TextFeatures(embeds=embeds, input_ids=input_ids, attention_mask=attention_mask)

    # ImageTextMatcher
    @torch.inference_mode()
    def match(self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor) -> torch.Tensor:
        pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2).cpu()
        return self.score_pairs(visual.tokens, pairs[:, 0], texts.input_ids, texts.attention_mask, pairs[:, 1])

    # ImageTextMatchProbability
    @torch.inference_mode()
    def match_probability(self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor) -> torch.Tensor:
        """softmax over the ITM head's (no match, match) logits, at "match": the score BLIP's
        ITM demo reports and CapFilt's filter thresholds."""
        pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2).cpu()
        return self.score_pairs(
            visual.tokens, pairs[:, 0], texts.input_ids, texts.attention_mask, pairs[:, 1], output=match_probability
        )

    # DialogAnswerRanker
    @torch.inference_mode()
    def score_dialog_answers(
        self, visual: VisualFeatures, contexts: Sequence[DialogContext], candidates: Sequence[Sequence[str]]
    ) -> torch.Tensor:
        counts = {len(options) for options in candidates}
        if len(candidates) != len(contexts) or len(counts) > 1:
            raise ValueError(
                f"score_dialog_answers needs one equally long candidate list per context; got {len(contexts)} "
                f"contexts and candidate lists of lengths {sorted(counts)}"
            )
        num_candidates = counts.pop() if counts else 0
        rounds = int(self.protocol.get("history_rounds", DEFAULT_HISTORY_ROUNDS))
        texts = [
            dialog_text(context, candidate, rounds)
            for context, options in zip(contexts, candidates, strict=True)
            for candidate in options
        ]
        if not texts:
            return torch.empty(len(contexts), num_candidates)
        # Left truncation keeps the question and the candidate when a long history overflows.
        input_ids, attention_mask = self.tokenize(texts, self.max_text_tokens, truncation_side="left")
        image_rows = torch.arange(len(contexts)).repeat_interleave(num_candidates)
        scores = self.score_pairs(visual.tokens, image_rows, input_ids, attention_mask, torch.arange(len(texts)))
        return scores.view(len(contexts), num_candidates)

    def score_pairs(
        self,
        image_tokens: torch.Tensor,
        image_rows: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        text_rows: torch.Tensor,
        output: Callable[[torch.Tensor], torch.Tensor] = match_logit,
    ) -> torch.Tensor:
        """``output`` of the ITM logits (P,) for image ``image_rows[i]`` with text ``text_rows[i]``
        (by default the "match" logit), float32 on CPU.

        Pairs are sorted by image so that a chunk holds few distinct images; each chunk moves
        those images' tokens to the device once and cuts its texts to the chunk's longest.
        ``itm_logits`` is the one forward pass a faster implementation can replace.
        """
        scores = torch.empty(len(image_rows), dtype=torch.float32)
        order = torch.argsort(image_rows, stable=True)
        for start in range(0, len(order), self.match_batch_size):
            chunk = order[start : start + self.match_batch_size]
            images, image_index = torch.unique_consecutive(image_rows[chunk], return_inverse=True)
            tokens = self.on_device(image_tokens[images.to(image_tokens.device)])
            rows = text_rows[chunk].to(input_ids.device)
            mask = attention_mask[rows].to(self.device)
            length = int(mask.sum(dim=1).max())
            ids = input_ids[rows].to(self.device)[:, :length].clone()
            ids[:, 0] = self.enc_token_id
            with self.autocast():
                logits = self.itm_logits(tokens, image_index.to(self.device), ids, mask[:, :length])
            scores[chunk] = output(logits.float()).cpu()
        return scores

    def itm_logits(
        self, image_tokens: torch.Tensor, image_index: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Distinct images' tokens (U, L, H), each text's image (N,) and its ids (N, T) with
        ``[ENC]`` first -> (N, 2) ITM logits (no match, match). Without ``fast_itm`` each image's
        tokens are repeated for every text paired with it."""
        if self.fast_itm:
            return fast_itm.itm_logits(self.module, image_tokens, image_index, input_ids, attention_mask)
        pair_tokens = image_tokens[image_index]
        hidden = self.module.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=pair_tokens,
            encoder_attention_mask=self.image_mask(pair_tokens),
        ).last_hidden_state
        return self.module.itm_head(hidden[:, 0])
