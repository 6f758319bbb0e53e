"""Diversity of generated captions: Distinct-n, vocabulary size and mBLEU-4.

The BLIP paper (section 4.3, "diversity is key for synthetic captions") argues that nucleus
sampling beats beam search for CapFilt because its captions are more diverse, at the price of
more noise. These functions measure that diversity; they take captions as plain strings and use
one tokenisation for all three (lowercase, runs of letters, digits and apostrophes), so the numbers
of two decoding methods are comparable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9']+")


def caption_tokens(caption: str) -> list[str]:
    """The words of a caption as the diversity metrics count them.

    Examples
    --------
    >>> caption_tokens("A dog, running on the GRASS.")
    ['a', 'dog', 'running', 'on', 'the', 'grass']
    """
    return _TOKEN.findall(caption.lower())


def _check_captions(captions: Sequence[str]) -> None:
    if isinstance(captions, str):
        raise ValueError("captions must be a sequence of strings, not a single string")
    if len(captions) == 0:
        raise ValueError("no captions; diversity over zero captions is undefined")


def distinct_n(captions: Sequence[str], n: int) -> float:
    """Distinct-n: unique n-grams over all n-grams, pooled over every caption.

    An n-gram never spans two captions. Captions shorter than ``n`` words contribute no n-gram;
    if no caption has ``n`` words the value is 0.0.

    Parameters
    ----------
    captions : sequence of str
    n : int >= 1

    Returns
    -------
    distinct : float in [0, 1]

    Examples
    --------
    >>> distinct_n(["a dog runs", "a dog sits"], 1)
    0.6666666666666666
    >>> distinct_n(["a dog runs", "a dog sits"], 2)
    0.75

    References
    ----------
    Li et al., "A Diversity-Promoting Objective Function for Neural Conversation Models",
    NAACL 2016 (distinct-1, distinct-2).
    """
    _check_captions(captions)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [
        tuple(words[i : i + n])
        for words in map(caption_tokens, captions)
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


def vocabulary_size(captions: Sequence[str]) -> int:
    """Number of distinct words over all captions.

    Examples
    --------
    >>> vocabulary_size(["a dog runs", "A dog sits."])
    4
    """
    _check_captions(captions)
    return len({word for caption in captions for word in caption_tokens(caption)})


def mbleu4(groups: Sequence[Sequence[str]]) -> float:
    """mBLEU-4: each caption's sentence BLEU-4 against the other captions of its image, averaged.

    Lower is more diverse: identical captions score 100, captions that share no 4-gram score
    close to 0. Groups with fewer than two captions have nothing to compare with and are skipped;
    if no group has two captions the value is undefined and a ``ValueError`` is raised. BLEU is
    pycocoevalcap's (closest reference length, its own tiny smoothing), on the tokens of
    :func:`caption_tokens`, so the value sits on the same scale as the captioning BLEU-4.

    Parameters
    ----------
    groups : sequence of sequences of str
        The captions of each image.

    Returns
    -------
    mbleu4 : float in [0, 100]

    Examples
    --------
    >>> round(mbleu4([["a dog runs on the grass", "a dog runs on the grass"]]), 6)
    100.0
    >>> round(mbleu4([["a dog runs on the grass", "two cats sleep in a red box"]]), 6)
    0.0

    References
    ----------
    Shetty et al., "Speaking the Same Language: Matching Machine to Human Captions by
    Adversarial Training", ICCV 2017 (mBLEU-4); Papineni et al., ACL 2002 (BLEU).
    """
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    if isinstance(groups, str):
        raise ValueError("groups must be a sequence of caption lists, one per image")
    scorer = BleuScorer(n=4)
    for captions in groups:
        if isinstance(captions, str):
            raise ValueError("each group must be a sequence of captions, not a single string")
        texts = [" ".join(caption_tokens(c)) for c in captions]
        if len(texts) < 2:
            continue
        for i, text in enumerate(texts):
            scorer += (text, texts[:i] + texts[i + 1 :])
    if not scorer.crefs:
        raise ValueError("mBLEU-4 needs at least one image with two or more captions")
    _, per_caption = scorer.compute_score(option="closest", verbose=0)
    bleu4 = per_caption[3]
    return 100.0 * sum(bleu4) / len(bleu4)
