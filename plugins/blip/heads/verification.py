"""BLIP's NLVR2 head: the statement (``[ENC]`` first) cross-attends to both images through the
twin cross-attention of ``nlvr2.BlipNLVR2Model``; class 1 of its classifier means "true"."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.capabilities import VisualFeatures
from harness_plugins.blip.catalog import NLVR2
from harness_plugins.blip.heads.base import BlipModel


class BlipNLVR2Verifier(BlipModel):
    """PairVerifier (plus the shared image encoder)."""

    head = NLVR2

    # PairVerifier
    @torch.inference_mode()
    def verify(self, left: VisualFeatures, right: VisualFeatures, statements: Sequence[str]) -> torch.Tensor:
        input_ids, attention_mask = self.tokenize(statements, self.max_text_tokens, enc_first=True)
        with self.autocast():
            logits = self.module(self.on_device(left.tokens), self.on_device(right.tokens), input_ids, attention_mask)
        return logits.float().softmax(dim=-1)[:, 1].cpu()
