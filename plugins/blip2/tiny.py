"""``blip2-tiny``: both BLIP-2 heads at toy size, built from configs with a fixed seed, offline.

Same transformers classes as the released models, only tiny: a 2-layer ViT (width 32, patches of
8 at 32 px), a 2-layer Q-Former with 4 query tokens, and a 2-layer OPT language model. The
Q-Former reads text with blip-tiny's closed BERT vocabulary; the language model gets an OPT-style
tokenizer (``</s>`` as BOS and end, prepended to every text) over the same words, built in memory.
"""

from __future__ import annotations

from typing import Any

import torch

from harness_plugins.blip.loading.tokenizer import SPECIAL_TOKENS, tiny_tokenizer, tiny_vocabulary
from harness_plugins.blip2.catalog import GENERATION, HF_CLASSES, RETRIEVAL, TINY_IMAGE_SIZE
from harness_plugins.blip2.loading import LoadedBlip2

WIDTH = 32
LAYERS = 2
HEADS = 2
FEED_FORWARD = 64
PATCH = 8
QUERY_TOKENS = 4
ITC_DIM = 16
LM_PAD, LM_END, LM_UNKNOWN, LM_IMAGE = "<pad>", "</s>", "<unk>", "<image>"


def tiny_lm_tokenizer() -> Any:
    """A fast WordPiece tokenizer over blip-tiny's words that, like OPT's, starts every text with
    ``</s>`` and ends none; ``<image>`` is the placeholder transformers' BLIP-2 ``generate`` fills
    with the query embeddings."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    words = [token for token in tiny_vocabulary() if token not in SPECIAL_TOKENS]
    vocab = {token: index for index, token in enumerate([LM_PAD, LM_END, LM_UNKNOWN, LM_IMAGE, *words])}
    backend = Tokenizer(WordPiece(vocab, unk_token=LM_UNKNOWN, continuing_subword_prefix="##"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{LM_END} $A", pair=f"{LM_END} $A $B", special_tokens=[(LM_END, vocab[LM_END])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=LM_END, eos_token=LM_END, pad_token=LM_PAD, unk_token=LM_UNKNOWN,
        additional_special_tokens=[LM_IMAGE],
    )


def tiny_config(head: str, qformer_tokenizer: Any, lm_tokenizer: Any, image_size: int = TINY_IMAGE_SIZE) -> Any:
    """The ``Blip2Config`` of a tiny ``head``. ``initializer_range`` 0.02 for the ViT, as for
    blip-tiny; the retrieval Q-Former reads text (``use_qformer_text_input``)."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    vision = Blip2VisionConfig(
        hidden_size=WIDTH, intermediate_size=FEED_FORWARD, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        image_size=image_size, patch_size=PATCH, initializer_range=0.02,
    )
    qformer = Blip2QFormerConfig(
        vocab_size=len(qformer_tokenizer), hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FEED_FORWARD, max_position_embeddings=64, encoder_hidden_size=WIDTH,
        cross_attention_frequency=1, pad_token_id=qformer_tokenizer.pad_token_id,
        use_qformer_text_input=head == RETRIEVAL,
    )
    text = OPTConfig(
        vocab_size=len(lm_tokenizer), hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        ffn_dim=FEED_FORWARD, word_embed_proj_dim=WIDTH, max_position_embeddings=128,
        bos_token_id=lm_tokenizer.bos_token_id, eos_token_id=lm_tokenizer.eos_token_id,
        pad_token_id=lm_tokenizer.pad_token_id,
    )
    return Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=QUERY_TOKENS, image_text_hidden_size=ITC_DIM,
        image_token_index=lm_tokenizer.convert_tokens_to_ids(LM_IMAGE) if head == GENERATION else None,
    )


def random_tiny(head: str, image_size: int = TINY_IMAGE_SIZE, seed: int = 0) -> LoadedBlip2:
    """A tiny ``head`` initialised from ``seed`` alone: the same seed gives the same weights."""
    import transformers

    qformer_tokenizer, lm_tokenizer = tiny_tokenizer(), tiny_lm_tokenizer()
    config = tiny_config(head, qformer_tokenizer, lm_tokenizer, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = getattr(transformers, HF_CLASSES[head])(config)
        # transformers starts the queries at zero, which makes them identical; LAVIS draws them
        # from N(0, 0.02) before pre-training, so the tiny model's queries differ as trained ones do.
        torch.nn.init.normal_(module.query_tokens, std=config.qformer_config.initializer_range)
    tokenizer = qformer_tokenizer if head == RETRIEVAL else lm_tokenizer
    return LoadedBlip2(module.eval(), tokenizer, f"blip2-tiny-seed{seed}", [])
