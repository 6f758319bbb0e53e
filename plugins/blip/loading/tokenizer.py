"""BLIP's tokenizer: BERT WordPiece plus the two tokens BLIP adds.

BLIP appends ``[DEC]`` (the decoder's BOS, id 30522 for BERT-base) and ``[ENC]`` (id 30523), which
replaces ``[CLS]`` whenever the text encoder cross-attends to an image (ITM, VQA, NLVR2). Hugging
Face's BLIP tokenizers do not all carry ``[ENC]``, so it is added here exactly as BLIP adds it.

The tiny test model has its own closed WordPiece vocabulary (the toy suite's words plus single
letters as a fallback), built in memory so it exists offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError

DEC_TOKEN = "[DEC]"
ENC_TOKEN = "[ENC]"
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

BERT_TOKENIZER_IDS: tuple[str, ...] = ("google-bert/bert-base-uncased", "bert-base-uncased")
"""Where BLIP's tokenizer comes from (BLIP builds it from ``bert-base-uncased``)."""

_TINY_COMMON_WORDS = """
a an the one two three four five six zero no yes true false not none is are was be it its this that
there here of in on at to from by with and or but than as into over under above below beneath near
left right top bottom center middle side up down upward downward picture image photo video clip frame
scene shape shapes object objects thing things colour color colours colors coloured colored what which
how many where who why does do did can could has have with without only both each every all any some
other another same different first second last next before after moving moves move moved slides slide
travels travel going goes still stays stay static around across through toward towards way direction
count number numbers kind type size small big large bright dark background foreground round sits placed
plus sign signs disk disks circle circles square squares triangle triangles star stars cross crosses
diamond diamonds hexagon hexagons red green blue yellow purple violet orange pink brown white black
gray grey dialog question answer caption statement please tell me you i we they see shown showing show
looks look like appears appear contains contain containing holds visible present absent exactly
most more fewer less much just also too again yep nope maybe sure think know don t s
""".split()

_PUNCTUATION = tuple("?.,!'\"-:;()")


def add_blip_tokens(tokenizer: Any) -> Any:
    """Make ``[DEC]`` the BOS and ``[ENC]`` a special token, as BLIP does; appended to the vocabulary
    when absent, otherwise only marked special (their ids stay), so this is idempotent."""
    tokenizer.add_special_tokens({"bos_token": DEC_TOKEN})
    tokenizer.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    return tokenizer


def enc_token_id(tokenizer: Any) -> int:
    return int(tokenizer.convert_tokens_to_ids(ENC_TOKEN))


def check_fits(tokenizer: Any, vocab_size: int, bos_token_id: int | None, source: str) -> None:
    """Refuse a tokenizer whose ids the model cannot embed, or whose ``[DEC]`` is not the
    decoder's BOS: either would silently produce garbage."""
    largest = len(tokenizer) - 1
    if largest >= vocab_size:
        raise ModelLoadError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab_size}; "
            "it is not the tokenizer these weights were trained with"
        )
    dec_id = tokenizer.convert_tokens_to_ids(DEC_TOKEN)
    if bos_token_id is not None and dec_id != bos_token_id:
        raise ModelLoadError(
            f"{source}: the tokenizer's {DEC_TOKEN} has id {dec_id} but the model's BOS is {bos_token_id}"
        )


def load_tokenizer(directory: str | Path) -> Any:
    """The tokenizer saved in a checkpoint directory, with BLIP's two tokens."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{directory}: cannot load its tokenizer ({exc})") from exc
    return add_blip_tokens(tokenizer)


def has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))


def find_bert_tokenizer() -> tuple[Any, str]:
    """BERT-base-uncased's tokenizer from the local Hugging Face cache (never downloaded), with
    BLIP's tokens; returns it and the repository it came from. Official ``.pth`` checkpoints carry
    no tokenizer, so this is where theirs comes from; any cached Salesforce BLIP repository holds
    the same vocabulary and serves as well."""
    found = cached_bert_tokenizer()
    if found is not None:
        directory, repo_id = found
        return load_tokenizer(directory), repo_id
    raise ModelLoadError(
        "BLIP's tokenizer (BERT-base-uncased) is not in the local Hugging Face cache; looked in "
        f"{', '.join(_bert_tokenizer_candidates())}. Run `hf download {BERT_TOKENIZER_IDS[0]}` on a machine "
        "with internet (copy ~/.cache/huggingface here), or pass a tokenizer directory"
    )


def _bert_tokenizer_candidates() -> tuple[str, ...]:
    from harness_plugins.blip.catalog import BASE_WEIGHTS, LARGE_WEIGHTS

    blip_repos = sorted({name for name in (*BASE_WEIGHTS.values(), *LARGE_WEIGHTS.values()) if "/" in name})
    return (*BERT_TOKENIZER_IDS, *blip_repos)


def cached_bert_tokenizer() -> tuple[Path, str] | None:
    """The cached directory holding BLIP's tokenizer and the repository it belongs to, without
    loading it (so a run can check it is here before loading anything); None when absent."""
    from harness_plugins.common.weights import cached_hub_dir

    for repo_id in _bert_tokenizer_candidates():
        directory = cached_hub_dir(repo_id)
        if directory is not None and has_tokenizer(directory):
            return directory, repo_id
    return None


def tokenizer_for_vocab(vocab_size: int) -> Any:
    """The tokenizer for weights that came without one, chosen by their vocabulary size: the tiny
    model's when it matches, BLIP's (BERT-base-uncased + 2) otherwise."""
    tiny = tiny_tokenizer()
    if vocab_size == len(tiny):
        return tiny
    tokenizer, _ = find_bert_tokenizer()
    return tokenizer


def tiny_vocabulary() -> list[str]:
    """The closed vocabulary of the tiny model: special tokens, the toy suite's words, digits,
    punctuation and single letters (as word starts and ``##`` continuations) so that no word
    falls back to ``[UNK]``. ``add_blip_tokens`` appends ``[DEC]`` and ``[ENC]`` after it, as
    BLIP appends them to BERT's vocabulary."""
    from harness.toy import vocab as toy

    phrases: list[str] = [*toy.COLOURS, *toy.SHAPES, *toy.PLURALS.values(), *toy.NUMBER_WORDS, *toy.POSITIONS]
    for table in (toy.POSITION_PHRASES, toy.RELATION_PHRASES, toy.MOTION_PHRASES):
        phrases += [phrase for options in table.values() for phrase in options]
    phrases += [word for options in toy.COLOUR_WORDS.values() for word in options]
    phrases += [word for options in toy.SHAPE_WORDS.values() for pair in options for word in pair]
    words = [word for phrase in phrases for word in phrase.split()] + _TINY_COMMON_WORDS
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = [*letters, *(f"##{piece}" for piece in letters)]
    return list(dict.fromkeys([*SPECIAL_TOKENS, *words, *_PUNCTUATION, *pieces]))


def tiny_tokenizer() -> Any:
    """An uncased BERT WordPiece tokenizer over ``tiny_vocabulary()`` with BOS ``[DEC]``."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(tiny_vocabulary())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    return add_blip_tokens(tokenizer)
