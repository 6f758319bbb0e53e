"""BLIP-2's retrieval head (LAVIS's ``blip2_qformer``): ITC over 32 query embeddings, ITM with
the queries and the text in one Q-Former pass.

ITC: an image is its queries' embeddings ``normalize(vision_projection(Q-Former queries))``
(N, Q, D); a text is ``normalize(text_projection(text-only Q-Former [CLS]))``; their similarity is
the maximum over the queries of the cosine, without a temperature (LAVIS's
``compute_sim_matrix``). ITM: the queries and the text (``[CLS]`` first, unlike BLIP's ``[ENC]``)
attend to each other and the queries to the ViT tokens; the score is the mean over the queries of
the "match" logit. The harness's re-rank adds it to the ITC similarity, as LAVIS does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from harness.capabilities import TextFeatures, VisualFeatures
from harness_plugins.blip2.base import Blip2Model
from harness_plugins.blip2.catalog import RETRIEVAL

DEFAULT_MAX_TEXT_TOKENS = 35
SIMILARITY_ELEMENTS = 1 << 26
"""Bound on the (images x queries x texts) products held at once by ``similarity``."""


class Blip2RetrievalModel(Blip2Model):
    """ImageTextEmbedder (with ImageTextSimilarity) and ImageTextMatcher (plus ImageEncoder)."""

    head = RETRIEVAL
    match_batch_size = 256
    """Pairs per Q-Former pass in ``match``."""

    # ImageEncoder
    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        """``tokens``: the ViT features ITM attends to; ``embeds`` (B, Q, D): the normalised query
        embeddings ITC compares."""
        with self.autocast():
            tokens = self.vision_tokens(pixels)
            queries = self.query_states(tokens)
            embeds = F.normalize(self.module.vision_projection(queries).float(), dim=-1)
        return VisualFeatures(embeds=embeds, tokens=tokens)

    # ImageTextEmbedder
    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> TextFeatures:
        max_tokens = int(self.protocol.get("max_text_tokens", DEFAULT_MAX_TEXT_TOKENS))
        encoded = self.tokenizer(
            list(texts), padding="longest", truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)
        with self.autocast():
            hidden = self.module.qformer(
                query_embeds=self.module.embeddings(input_ids=input_ids), query_length=0, attention_mask=attention_mask
            ).last_hidden_state
            embeds = F.normalize(self.module.text_projection(hidden[:, 0]).float(), dim=-1)
        return TextFeatures(embeds=embeds, input_ids=input_ids, attention_mask=attention_mask)

    # ImageTextSimilarity
    @torch.inference_mode()
    def similarity(self, visual: VisualFeatures, texts: TextFeatures) -> torch.Tensor:
        """(N, M): for each image and text, the best of the image's query cosines with the text,
        computed over chunks of images so a 5k x 25k gallery never holds all query products."""
        image_embeds = visual.embeds.float()
        text_embeds = texts.embeds.to(image_embeds.device).float()
        num_images, num_queries, _ = image_embeds.shape
        chunk = max(1, SIMILARITY_ELEMENTS // max(1, num_queries * text_embeds.shape[0]))
        sims = torch.empty(num_images, text_embeds.shape[0], device=image_embeds.device)
        for start in range(0, num_images, chunk):
            sims[start : start + chunk] = (image_embeds[start : start + chunk] @ text_embeds.T).amax(dim=1)
        return sims

    # ImageTextMatcher
    @torch.inference_mode()
    def match(self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor) -> torch.Tensor:
        """(P,) ITM scores, float32 on CPU; pairs go through in chunks, each cut to its longest text."""
        pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2).cpu()
        scores = torch.empty(len(pairs), dtype=torch.float32)
        for start in range(0, len(pairs), self.match_batch_size):
            chunk = pairs[start : start + self.match_batch_size]
            tokens = visual.tokens[chunk[:, 0].to(visual.tokens.device)].to(self.device)
            rows = chunk[:, 1].to(texts.input_ids.device)
            mask = texts.attention_mask[rows].to(self.device)
            length = int(mask.sum(dim=1).max())
            ids = texts.input_ids[rows].to(self.device)[:, :length]
            with self.autocast():
                scores[start : start + len(chunk)] = self.itm_scores(tokens, ids, mask[:, :length]).float().cpu()
        return scores

    def itm_scores(self, vision_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(P,) mean over the queries of the "match" logit for image ``vision_tokens[i]`` with text ``i``."""
        queries = self.module.query_tokens.expand(vision_tokens.shape[0], -1, -1)
        num_queries = queries.shape[1]
        hidden = self.module.qformer(
            query_embeds=self.module.embeddings(input_ids=input_ids, query_embeds=queries),
            query_length=num_queries,
            attention_mask=torch.cat([self.all_ones(queries), attention_mask], dim=1),
            encoder_hidden_states=vision_tokens,
            encoder_attention_mask=self.all_ones(vision_tokens),
        ).last_hidden_state
        return self.module.itm_head(hidden[:, :num_queries]).mean(dim=1)[:, 1]
