"""The VQA v2 accuracy metric, following the official evaluation script rule for rule.

VQA answers are free-form strings from ten annotators, so the official metric normalises answers
(punctuation, number words, articles, contractions) and then gives credit for agreeing with at
least three annotators, averaged over the ten leave-one-annotator-out subsets. Numbers reported
on the VQA v2 evaluation server come from that script, so the rules below reproduce its
behaviour, quirks included, rather than a cleaner normalisation of our own.

The script exists in two versions that score some answers differently (see
:func:`vqa_accuracy`): the current one (``"official"``, GT-Vision-Lab/VQA since March 2021) and
the 2016 one (``"2016"``) that LAVIS and other code bases still ship.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Marks the official script deletes, or turns into a space, before comparing answers. The
# apostrophe is not among them (it is needed by the contractions below), nor is the period,
# which has its own rule.
_PUNCTUATION = tuple(';/[]"{}()=+\\_-><@`,?!')
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group was meant as a look-behind but is
# written as a look-ahead for the literal "<=" followed by a digit, which can never match at a
# period, so in effect a period is removed unless a digit follows it ("2.5" and ".5" keep theirs,
# "yes." and "st.louis" lose theirs). We reproduce that effect.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
# Both versions of the script pass ``re.UNICODE`` (32) where ``re.sub`` takes its ``count``, so
# at most this many periods are removed from one answer.
_MAX_PERIODS_REMOVED = int(re.UNICODE)

VQA_SCORERS = ("official", "2016")
"""Versions of the official scorer :func:`vqa_accuracy` can follow; the first is the default."""

# Spelling the official script rewrites -> the form it rewrites it to, grouped by target. Entries
# of the official table that can never fire are left out: keys with a capital letter (the answer
# is lowercased first) and keys mapped to themselves. "somebody'd" -> "somebodyd" is backwards in
# the official table; it is kept so scores match the server.
_CONTRACTION_SPELLINGS: dict[str, tuple[str, ...]] = {
    "ain't": ("aint",), "aren't": ("arent",), "can't": ("cant",), "could've": ("couldve",),
    "couldn't": ("couldnt",), "couldn't've": ("couldn'tve", "couldnt've"), "didn't": ("didnt",),
    "doesn't": ("doesnt",), "don't": ("dont",), "hadn't": ("hadnt",),
    "hadn't've": ("hadnt've", "hadn'tve"), "hasn't": ("hasnt",), "haven't": ("havent",),
    "he'd": ("hed",), "he'd've": ("hed've", "he'dve"), "he's": ("hes",), "how'd": ("howd",),
    "how'll": ("howll",), "how's": ("hows",), "isn't": ("isnt",), "it'd": ("itd",),
    "it'd've": ("itd've", "it'dve"), "it'll": ("itll",), "ma'am": ("maam",),
    "mightn't": ("mightnt",), "mightn't've": ("mightnt've", "mightn'tve"),
    "might've": ("mightve",), "mustn't": ("mustnt",), "must've": ("mustve",),
    "needn't": ("neednt",), "not've": ("notve",), "o'clock": ("oclock",),
    "oughtn't": ("oughtnt",), "'ow's'at": ("ow's'at", "'ows'at", "'ow'sat"), "shan't": ("shant",),
    "she'd've": ("shed've", "she'dve"), "should've": ("shouldve",), "shouldn't": ("shouldnt",),
    "shouldn't've": ("shouldnt've", "shouldn'tve"), "somebodyd": ("somebody'd",),
    "somebody'd've": ("somebodyd've", "somebody'dve"), "somebody'll": ("somebodyll",),
    "somebody's": ("somebodys",), "someone'd": ("someoned",),
    "someone'd've": ("someoned've", "someone'dve"), "someone'll": ("someonell",),
    "someone's": ("someones",), "something'd": ("somethingd",),
    "something'd've": ("somethingd've", "something'dve"), "something'll": ("somethingll",),
    "that's": ("thats",), "there'd": ("thered",), "there'd've": ("thered've", "there'dve"),
    "there're": ("therere",), "there's": ("theres",), "they'd": ("theyd",),
    "they'd've": ("theyd've", "they'dve"), "they'll": ("theyll",), "they're": ("theyre",),
    "they've": ("theyve",), "'twas": ("twas",), "wasn't": ("wasnt",),
    "we'd've": ("wed've", "we'dve"), "we've": ("weve",), "weren't": ("werent",),
    "what'll": ("whatll",), "what're": ("whatre",), "what's": ("whats",), "what've": ("whatve",),
    "when's": ("whens",), "where'd": ("whered",), "where's": ("wheres",),
    "where've": ("whereve",), "who'd": ("whod",), "who'd've": ("whod've", "who'dve"),
    "who'll": ("wholl",), "who's": ("whos",), "who've": ("whove",), "why'll": ("whyll",),
    "why're": ("whyre",), "why's": ("whys",), "won't": ("wont",), "would've": ("wouldve",),
    "wouldn't": ("wouldnt",), "wouldn't've": ("wouldnt've", "wouldn'tve"), "y'all": ("yall",),
    "y'all'll": ("yall'll", "y'allll"), "y'all'd've": ("yall'd've", "y'alld've", "y'all'dve"),
    "you'd": ("youd",), "you'd've": ("youd've", "you'dve"), "you'll": ("youll",),
    "you're": ("youre",), "you've": ("youve",),
}  # fmt: skip
_CONTRACTIONS = {
    spelling: target for target, spellings in _CONTRACTION_SPELLINGS.items() for spelling in spellings
}


def _process_punctuation(text: str) -> str:
    """The official script's punctuation step (applied to predictions and, sometimes, to answers).

    A mark that touches a space somewhere in the text (``"yes , it is"``), or any mark at all in
    a text holding a digit-comma-digit group (``"1,000"``), is deleted; otherwise the mark is
    replaced by a space so that words it joined stay apart (``"black/white"``).
    """
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    result = text
    for mark in _PUNCTUATION:
        touches_space = f"{mark} " in text or f" {mark}" in text
        result = result.replace(mark, "" if delete_all or touches_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", result, count=_MAX_PERIODS_REMOVED)


def _process_digit_article(text: str) -> str:
    """The official script's word step: lowercase, number words to digits, articles dropped,
    apostrophe-less contractions restored, words joined by single spaces."""
    words = (_NUMBER_WORDS.get(word, word) for word in text.lower().split())
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def _clean_whitespace(text: str) -> str:
    """Newlines and tabs become spaces and the ends are stripped (the script's first step)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """Normalise a free-form answer with every step of the official VQA evaluation.

    The current script applies it to the prediction and the answers when annotators disagree;
    the 2016 one to every prediction (see :func:`vqa_accuracy`).

    Steps, in order: newlines and tabs become spaces and the ends are stripped; punctuation is
    deleted or replaced by a space (see the rules in the module); the text is lowercased and
    split on whitespace; number words ``none``/``zero`` .. ``ten`` become digits; the articles
    ``a``, ``an``, ``the`` are dropped; apostrophe-less contractions are restored
    (``dont`` -> ``don't``); words are joined with single spaces.

    Parameters
    ----------
    answer : str

    Returns
    -------
    normalized : str

    Examples
    --------
    >>> normalize_answer("Two dogs.")
    '2 dogs'
    >>> normalize_answer("The black/white cat")
    'black white cat'
    >>> normalize_answer("I dont know")
    "i don't know"

    References
    ----------
    ``vqaEval.py`` (``processPunctuation`` and ``processDigitArticle``) in the official VQA
    evaluation tools, github.com/GT-Vision-Lab/VQA.
    """
    if not isinstance(answer, str):
        raise ValueError(f"an answer must be a string, got {answer!r}")
    return _process_digit_article(_process_punctuation(_clean_whitespace(answer)))


def check_vqa_scorer(scorer: str) -> str:
    """Return ``scorer`` if it names a version in :data:`VQA_SCORERS`, else raise ValueError."""
    if scorer not in VQA_SCORERS:
        raise ValueError(f"vqa scorer must be one of {', '.join(VQA_SCORERS)}, got {scorer!r}")
    return scorer


def vqa_accuracy(prediction: str, gt_answers: Sequence[str], *, scorer: str = "official") -> float:
    """VQA accuracy of one predicted answer against the annotators' answers, in [0, 1].

    An answer counts as fully correct when at least three annotators gave it. To make the score
    robust to any single annotator, it is averaged over the leave-one-out subsets: for each
    annotator i, ``min(1, (number of the OTHER annotators whose answer equals the prediction) /
    3)``, then the mean over i. With ten answers this gives 0, 0.3, 0.6, 0.9 or 1.0 for 0, 1, 2, 3
    or 4+ matches. With fewer than ten answers the same rule runs over the answers there are;
    note that a single answer always scores 0 (leaving it out leaves nothing to match).

    What is compared depends on the version of the official script:

    ``"official"`` (current ``vqaEval.py``)
        Newlines and tabs become spaces and the ends are stripped, in the prediction and in the
        answers. Then, only when the answers are not all identical, the answers *and* the
        prediction are normalised (:func:`normalize_answer`). When all answers are identical,
        neither is normalised: ``"Yes"`` or ``"yes."`` scores 0 against ten ``"yes"``.
    ``"2016"`` (the version LAVIS ships)
        The prediction is always normalised; the answers are taken as given except that, when
        they are not all identical, they pass through the punctuation step only (no
        lowercasing, no number words): ``"2"`` does not match an annotator's ``"two"``.

    Parameters
    ----------
    prediction : str
        The model's answer, raw.
    gt_answers : sequence of str
        The annotators' answers (ten in VQA v2).
    scorer : {"official", "2016"}
        Version of the official script to follow.

    Returns
    -------
    accuracy : float in [0, 1]

    Examples
    --------
    >>> vqa_accuracy("Two", ["2", "2", "3", "2", "2", "2", "two", "2", "2", "2"])
    1.0
    >>> vqa_accuracy("yes", ["yes", "yes", "no", "no", "no", "no", "no", "no", "no", "no"])
    0.6
    >>> vqa_accuracy("Yes", ["yes"] * 10), vqa_accuracy("Yes", ["yes"] * 10, scorer="2016")
    (0.0, 1.0)

    References
    ----------
    Antol et al., "VQA: Visual Question Answering", ICCV 2015; Goyal et al., "Making the V in
    VQA Matter", CVPR 2017; ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` in
    github.com/GT-Vision-Lab/VQA (current: commit a013f00, 2021; 2016: commit 458a8b2).
    """
    check_vqa_scorer(scorer)
    if isinstance(gt_answers, str):
        raise ValueError(f"gt_answers must be a sequence of answers, got the single string {gt_answers!r}")
    answers = list(gt_answers)
    if not answers:
        raise ValueError("gt_answers is empty; VQA accuracy needs at least one annotator answer")
    for answer in answers:
        if not isinstance(answer, str):
            raise ValueError(f"every ground-truth answer must be a string, got {answer!r}")
    if not isinstance(prediction, str):
        raise ValueError(f"an answer must be a string, got {prediction!r}")
    if scorer == "official":
        answers = [_clean_whitespace(answer) for answer in answers]
        predicted = _clean_whitespace(prediction)
        if len(set(answers)) > 1:
            answers = [normalize_answer(answer) for answer in answers]
            predicted = normalize_answer(predicted)
    else:
        predicted = normalize_answer(prediction)
        if len(set(answers)) > 1:
            answers = [_process_punctuation(answer) for answer in answers]
    is_match = [answer == predicted for answer in answers]
    total_matches = sum(is_match)
    per_subset = [min(1.0, (total_matches - left_out) / 3) for left_out in is_match]
    return sum(per_subset) / len(per_subset)


def per_sample_vqa_accuracy(
    predictions: Sequence[str], gt_answers: Sequence[Sequence[str]], *, scorer: str = "official"
) -> list[float]:
    """VQA accuracy of each question, in [0, 1]; for bootstrap intervals and per-sample files.

    Parameters
    ----------
    predictions : sequence of str
        One raw answer per question.
    gt_answers : sequence of sequences of str
        The annotators' answers of each question, aligned with ``predictions``.
    scorer : {"official", "2016"}
        Version of the official script to follow (see :func:`vqa_accuracy`).

    Returns
    -------
    accuracies : list of float in [0, 1]

    Examples
    --------
    >>> per_sample_vqa_accuracy(["yes", "no"], [["yes"] * 10, ["yes"] * 10])
    [1.0, 0.0]

    References
    ----------
    See :func:`vqa_accuracy`.
    """
    if len(predictions) != len(gt_answers):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(gt_answers)} ground-truth answer lists; "
            "they must be aligned one-to-one"
        )
    if len(predictions) == 0:
        raise ValueError("no predictions; VQA accuracy over zero questions is undefined")
    return [
        vqa_accuracy(prediction, answers, scorer=scorer)
        for prediction, answers in zip(predictions, gt_answers, strict=True)
    ]


def vqa_accuracy_score(
    predictions: Sequence[str], gt_answers: Sequence[Sequence[str]], *, scorer: str = "official"
) -> float:
    """Mean VQA accuracy over questions, in percent (the number VQA v2 tables report).

    Parameters
    ----------
    predictions : sequence of str
        One raw answer per question.
    gt_answers : sequence of sequences of str
        The annotators' answers of each question, aligned with ``predictions``.
    scorer : {"official", "2016"}
        Version of the official script to follow (see :func:`vqa_accuracy`).

    Returns
    -------
    accuracy : float in [0, 100]

    Examples
    --------
    >>> vqa_accuracy_score(["yes", "2"], [["yes"] * 10, ["2", "2", "3"] + ["4"] * 7])
    80.0

    References
    ----------
    See :func:`vqa_accuracy`; BLIP (ICML 2022), Table 8.
    """
    scores = per_sample_vqa_accuracy(predictions, gt_answers, scorer=scorer)
    return 100.0 * sum(scores) / len(scores)
