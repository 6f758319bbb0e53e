"""BLIP-2's generation head (LAVIS's ``blip2_opt`` / ``blip2_t5``): the Q-Former's queries,
projected into the language model's embedding space, are the soft prompt the language model
continues; captioning and zero-shot VQA are both generation.

The image is ``language_projection(Q-Former queries)`` (B, Q, E), computed once by
``encode_images``; the text prompt's embeddings follow it and the language model's ``generate``
runs on the concatenation, as LAVIS calls it (``inputs_embeds``). Lengths:
- captions: ``max_length``/``min_length`` count the prompt's tokens (BOS included), as LAVIS's
  caption ``generate`` counted them when the paper's numbers were made (its OPT took the prompt as
  ``input_ids``); the prompt is not part of the returned caption;
- VQA answers: ``max_length`` counts the answer's tokens only (LAVIS's ``predict_answers`` passes
  ``max_new_tokens``); the question, formatted into the prompt template, is left-padded in a batch.
A decoder-only language model stops at its end token or, as LAVIS's OPT models do, at a newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.capabilities import GenerationSettings, VisualFeatures
from harness.errors import CapabilityError
from harness_plugins.blip2.base import Blip2Model
from harness_plugins.blip2.catalog import GENERATION

SAMPLING_TOP_K = 50
"""LAVIS's nucleus sampling passes no top-k, so the transformers 4 it ran on applied its default
of 50; transformers 5 no longer defaults to it, so it is passed explicitly."""


def stop_token_ids(tokenizer: Any, language_config: Any) -> list[int]:
    """The language model's end token, and for a decoder-only model the newline token when the
    tokenizer has one (LAVIS's OPT models end a caption or answer at "\\n")."""
    stops = [int(language_config.eos_token_id)]
    if not language_config.is_encoder_decoder:
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        if len(newline) == 1 and newline[0] not in stops:
            stops.append(int(newline[0]))
    return stops


class Blip2GenerationModel(Blip2Model):
    """Captioner and VisualQuestionAnswerer (generation only), plus ImageEncoder."""

    head = GENERATION

    # ImageEncoder
    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        """``tokens`` (B, Q, E): the queries in the language model's embedding space; no ITC."""
        with self.autocast():
            queries = self.query_states(self.vision_tokens(pixels))
            tokens = self.module.language_projection(queries.to(self.module.language_projection.weight.dtype))
        return VisualFeatures(embeds=None, tokens=tokens)

    # Captioner
    @torch.inference_mode()
    def caption(self, visual: VisualFeatures, settings: GenerationSettings) -> list[str]:
        prompts = [settings.prompt] * visual.tokens.shape[0]
        encoded = self.tokenizer(prompts, return_tensors="pt", padding="longest")
        prompt_length = encoded["input_ids"].shape[1]
        return self.generate(
            visual, encoded, settings,
            max_new_tokens=max(1, settings.max_length - prompt_length),
            min_new_tokens=max(0, settings.min_length - prompt_length),
        )

    # VisualQuestionAnswerer
    @torch.inference_mode()
    def answer(self, visual: VisualFeatures, questions: Sequence[str], settings: GenerationSettings) -> list[str]:
        texts = [settings.prompt.format(question) if settings.prompt else question for question in questions]
        previous = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            encoded = self.tokenizer(texts, return_tensors="pt", padding="longest")
        finally:
            self.tokenizer.padding_side = previous
        return self.generate(
            visual, encoded, settings, max_new_tokens=settings.max_length, min_new_tokens=settings.min_length
        )

    def rank_answers(
        self, visual: VisualFeatures, questions: Sequence[str], answer_list: Sequence[str], k: int
    ) -> list[int]:
        raise CapabilityError(
            "BLIP-2 answers VQA by generation (its zero-shot protocol); run with --set mode=generate"
        )

    def generate(
        self, visual: VisualFeatures, encoded: Any, settings: GenerationSettings, *, max_new_tokens: int,
        min_new_tokens: int,
    ) -> list[str]:
        """Decode continuations of [queries; text] for each visual row; the text's special tokens
        and the prompt are not part of the result."""
        language_model = self.module.language_model
        input_ids = encoded["input_ids"].to(self.device)
        queries = visual.tokens.to(self.device)
        with self.autocast():
            text_embeds = language_model.get_input_embeddings()(input_ids)
            inputs_embeds = torch.cat([queries.to(text_embeds.dtype), text_embeds], dim=1)
            attention_mask = torch.cat([self.all_ones(queries), encoded["attention_mask"].to(self.device)], dim=1)
            sampling = (
                {"do_sample": True, "top_p": settings.top_p, "top_k": SAMPLING_TOP_K, "num_beams": 1}
                if settings.sample
                else {"do_sample": False, "num_beams": settings.num_beams}
            )
            generated = language_model.generate(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                repetition_penalty=settings.repetition_penalty,
                length_penalty=settings.length_penalty,
                eos_token_id=stop_token_ids(self.tokenizer, language_model.config),
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        return [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
