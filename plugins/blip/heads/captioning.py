"""BLIP's captioning head: the text decoder cross-attends to the ViT tokens and continues a prompt.

As in BLIP, the prompt ("a picture of ") is tokenised, its ``[CLS]`` replaced by the BOS ``[DEC]``
and its final ``[SEP]`` dropped, so the decoder continues it; the prompt counts towards max and
min length and is stripped from the decoded caption.
"""

from __future__ import annotations

import torch

from harness.capabilities import GenerationSettings, VisualFeatures
from harness_plugins.blip.catalog import CAPTION
from harness_plugins.blip.heads.base import BlipModel
from harness_plugins.blip.heads.generation import decode


def strip_prompt(caption: str, prompt: str) -> str:
    """The caption without the (decoded) prompt it starts with."""
    if prompt and caption.startswith(prompt):
        caption = caption[len(prompt) :]
    return caption.strip()


class BlipCaptionModel(BlipModel):
    """Captioner (plus the shared encoders)."""

    head = CAPTION

    # Captioner
    @torch.inference_mode()
    def caption(self, visual: VisualFeatures, settings: GenerationSettings) -> list[str]:
        tokens = self.on_device(visual.tokens)
        prompt_ids = self.tokenizer(
            [settings.prompt] * tokens.shape[0], return_tensors="pt"
        )["input_ids"].to(self.device)
        prompt_ids[:, 0] = self.module.config.text_config.bos_token_id
        prompt_ids = prompt_ids[:, :-1]
        with self.autocast():
            generated = decode(
                self.module.text_decoder, prompt_ids, tokens, self.image_mask(tokens), settings, self.tokenizer
            )
        prompt = self.tokenizer.decode(prompt_ids[0], skip_special_tokens=True)
        return [strip_prompt(text, prompt) for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
