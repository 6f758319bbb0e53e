"""Caption and question normalisation as BLIP applies it before tokenisation.

Retrieval, captioning references, NLVR2 and video retrieval pass texts through ``pre_caption``;
VQA questions through ``pre_question``. Both follow BLIP's ``data/utils.py`` so that the tokens a
checkpoint sees at evaluation are the tokens it was fine-tuned on.
"""

from __future__ import annotations

import re

# Punctuation BLIP removes: a space in captions, nothing in questions.
_PUNCTUATION = re.compile(r"[.!\"()*#:;~]")
# Only runs of two or more whitespace characters collapse, as in BLIP (a lone tab stays).
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def _truncate(text: str, max_words: int) -> str:
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def pre_caption(caption: str, max_words: int) -> str:
    """Lowercase, punctuation ``.!"()*#:;~`` to spaces, whitespace runs to one space, trimmed,
    then cut to the first ``max_words`` space-separated words."""
    text = _PUNCTUATION.sub(" ", caption.lower())
    text = _WHITESPACE_RUN.sub(" ", text)
    text = text.rstrip("\n").strip(" ")
    return _truncate(text, max_words)


def pre_question(question: str, max_words: int) -> str:
    """Lowercase, punctuation ``.!"()*#:;~`` removed, trailing spaces trimmed, then cut to the
    first ``max_words`` space-separated words (BLIP's VQA question preprocessing)."""
    text = _PUNCTUATION.sub("", question.lower()).rstrip(" ")
    return _truncate(text, max_words)
