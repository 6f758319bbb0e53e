"""BLIP's training objectives on transformers' BLIP modules, for ``harness toy train``.

- ITC: image-text contrastive loss with a learnable temperature; captions of the same image are
  all positives (BLIP's retrieval fine-tuning targets), so two captions of one image in a batch
  are not pushed apart.
- ITM: binary matching with hard negatives: for each text a negative image and for each image a
  negative text is sampled with probability softmax(ITC similarity) over the batch, positives
  excluded, and the text encoder reads the pair with ``[ENC]`` first.
- LM: the decoder's next-token loss with label smoothing 0.1, prompt tokens not scored.
- Answer loss (VQA): the same token loss summed per answer and weighted by how many annotators
  gave that answer.

No momentum encoder or feature queue: at toy scale a batch holds a good share of the data set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LABEL_SMOOTHING = 0.1
IGNORE = -100


def same_image(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(R, C) bool: which pairs show the same image (by image id)."""
    return rows[:, None] == cols[None, :]


def itc_loss(
    image_feat: torch.Tensor, text_feat: torch.Tensor, image_ids: torch.Tensor, temp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (B, D) features of images and their texts (row b of each is a pair), image id
    of each pair -> (loss, image-to-text similarity (B, B) before the temperature)."""
    sim = image_feat @ text_feat.t()
    positives = same_image(image_ids, image_ids).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    logits = sim / temp
    loss_i2t = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(logits.t(), dim=1) * targets).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2, sim


def hard_negatives(sim: torch.Tensor, image_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each row, a column drawn with probability softmax(sim row) among the columns that do
    not show the row's image (BLIP's hard-negative mining)."""
    weights = F.softmax(sim.detach().float(), dim=1) + 1e-12
    weights = weights.masked_fill(same_image(image_ids, image_ids), 0)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def itm_logits(
    text_encoder: nn.Module,
    itm_head: nn.Module,
    image_tokens: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    enc_token_id: int,
) -> torch.Tensor:
    """(N, 2) ITM logits of image i with text i, ``[ENC]`` replacing the first token."""
    ids = input_ids.clone()
    ids[:, 0] = enc_token_id
    hidden = text_encoder(
        input_ids=ids,
        attention_mask=attention_mask,
        encoder_hidden_states=image_tokens,
        encoder_attention_mask=torch.ones(image_tokens.shape[:2], dtype=torch.long),
    ).last_hidden_state
    return itm_head(hidden[:, 0])


def itm_loss(
    text_encoder: nn.Module,
    itm_head: nn.Module,
    image_tokens: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_ids: torch.Tensor,
    sim_i2t: torch.Tensor,
    enc_token_id: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Cross-entropy over B positive pairs, B (hard negative image, text) and B (image, hard
    negative text) pairs."""
    negative_image = hard_negatives(sim_i2t.t(), image_ids, generator)
    negative_text = hard_negatives(sim_i2t, image_ids, generator)
    tokens = torch.cat([image_tokens, image_tokens[negative_image], image_tokens])
    ids = torch.cat([input_ids, input_ids, input_ids[negative_text]])
    mask = torch.cat([attention_mask, attention_mask, attention_mask[negative_text]])
    logits = itm_logits(text_encoder, itm_head, tokens, ids, mask, enc_token_id)
    batch = len(input_ids)
    labels = torch.cat([torch.ones(batch, dtype=torch.long), torch.zeros(2 * batch, dtype=torch.long)])
    return F.cross_entropy(logits, labels)


def token_losses(
    decoder: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    encoder_states: torch.Tensor,
    encoder_mask: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """(N, T-1) label-smoothed losses of predicting ``targets[:, 1:]`` (``IGNORE`` where not
    scored, 0 there) from the tokens before, the decoder cross-attending to ``encoder_states``."""
    logits = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        encoder_hidden_states=encoder_states,
        encoder_attention_mask=encoder_mask,
        use_cache=False,
    ).logits
    shifted = targets[:, 1:]
    losses = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        shifted.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
        label_smoothing=LABEL_SMOOTHING,
    )
    return losses.view(shifted.shape)


def decoder_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor, unscored_prefix: int = 0) -> torch.Tensor:
    """Token ids as targets: padding and the first ``unscored_prefix`` positions (BOS and prompt)
    ignored."""
    targets = input_ids.masked_fill(attention_mask == 0, IGNORE)
    targets[:, :unscored_prefix] = IGNORE
    return targets


def lm_loss(
    decoder: nn.Module,
    image_tokens: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_length: int,
) -> torch.Tensor:
    """Captioning loss: mean over the caption's tokens (prompt excluded); ``input_ids`` start
    with BOS and the prompt."""
    targets = decoder_targets(input_ids, attention_mask, prompt_length)
    image_mask = torch.ones(image_tokens.shape[:2], dtype=torch.long)
    losses = token_losses(decoder, input_ids, attention_mask, image_tokens, image_mask, targets)
    return losses.sum() / (targets[:, 1:] != IGNORE).sum()


def answer_loss(
    decoder: nn.Module,
    question_states: torch.Tensor,
    question_mask: torch.Tensor,
    answer_ids: torch.Tensor,
    answer_mask: torch.Tensor,
    question_of_answer: torch.Tensor,
    answer_weights: torch.Tensor,
) -> torch.Tensor:
    """VQA loss: each answer's summed token loss times its weight, summed per question and
    averaged over questions; ``answer_ids`` start with BOS."""
    targets = decoder_targets(answer_ids, answer_mask, 1)
    losses = token_losses(
        decoder,
        answer_ids,
        answer_mask,
        question_states[question_of_answer],
        question_mask[question_of_answer],
        targets,
    ).sum(dim=1)
    return (losses * answer_weights).sum() / question_states.shape[0]
