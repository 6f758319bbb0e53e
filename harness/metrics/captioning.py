"""Caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE) through the COCO caption evaluation code.

Captioning numbers are only comparable when computed by the same code: the COCO evaluation
toolkit (``pycocoevalcap``) tokenises with Stanford's PTB tokenizer, drops punctuation, and runs
METEOR, the PTB tokenizer and SPICE as Java programs. This module calls those scorers unchanged
and only adds what the harness needs around them: input checks with clear errors, a clear error
when Java is missing, SPICE only when its models are installed (it would otherwise try to
download them), scores in percent as the BLIP paper prints them, and the NoCaps per-domain split.
pycocoevalcap is imported where it is used, so the rest of ``harness.metrics`` (and the tasks and
benchmarks that need only retrieval or VQA metrics) import on hosts without it, such as a GPU
node that only times models.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from harness.child_processes import reap_new_children
from harness.errors import ConfigError

NOCAPS_DOMAINS = {"in-domain": "in", "near-domain": "near", "out-domain": "out"}
"""NoCaps domain labels and the key prefix each one's metrics get."""

_Captions = Mapping[Hashable, Sequence[str]]
_Scorer = Callable[[_Captions, _Captions], list[float]]


def spice_models_present() -> bool:
    """Whether SPICE can run without downloading anything.

    pycocoevalcap's ``Spice()`` looks for Stanford CoreNLP 3.6.0 (``stanford-corenlp-3.6.0.jar``
    and ``stanford-corenlp-3.6.0-models.jar``) in its ``spice/lib`` folder and downloads the
    whole CoreNLP distribution when the jar is missing; this checks the same place,
    using the package's own names for it, without constructing the scorer.
    """
    from pycocoevalcap.spice import get_stanford_models as spice_models

    jars = (f"{spice_models.JAR}.jar", f"{spice_models.JAR}-models.jar")
    return all(os.path.isfile(os.path.join(_spice_lib_dir(), jar)) for jar in jars)


def _spice_lib_dir() -> str:
    """Where pycocoevalcap's SPICE looks for (and would download) Stanford CoreNLP."""
    from pycocoevalcap.spice import get_stanford_models as spice_models

    return os.path.join(spice_models.SPICEDIR, spice_models.SPICELIB)


def _use_spice(spice: bool | None) -> bool:
    if spice is False:
        return False
    if spice_models_present():
        return True
    lib_dir = _spice_lib_dir()
    fetch = (
        "fetch them with `python -m pycocoevalcap.spice.get_stanford_models` on a machine with network access"
    )
    if spice is True:
        raise ConfigError(
            f"SPICE was requested but its Stanford CoreNLP 3.6.0 models are not in {lib_dir}; {fetch}"
        )
    warnings.warn(
        f"SPICE skipped: its Stanford CoreNLP 3.6.0 models are not in {lib_dir} ({fetch})", stacklevel=4
    )
    return False


def _require_java() -> None:
    if shutil.which("java") is None:
        raise ConfigError(
            "captioning metrics need Java (pycocoevalcap runs the PTB tokenizer and METEOR in Java); "
            "install a JRE, e.g. apt-get install default-jre"
        )


def _check_captions(predictions: Mapping[Hashable, str], references: _Captions) -> None:
    if not predictions:
        raise ValueError("predictions is empty; caption metrics need at least one example")
    for example_id, caption in predictions.items():
        if example_id not in references:
            raise ValueError(f"example {example_id!r} has a prediction but no references")
        if not isinstance(caption, str):
            raise ValueError(f"the prediction of example {example_id!r} must be a string, got {caption!r}")
    for example_id, captions in references.items():
        if example_id not in predictions:
            raise ValueError(f"example {example_id!r} has references but no prediction")
        if isinstance(captions, str) or not captions or not all(isinstance(c, str) for c in captions):
            raise ValueError(
                f"the references of example {example_id!r} must be a non-empty list of strings, got {captions!r}"
            )


def _tokenize(captions: _Captions) -> dict[Hashable, list[str]]:
    # The tokenizer writes one caption per line and reads one line back per caption, so a line
    # break inside a caption (\r, \u2028, ...) would shift every later caption onto the wrong
    # example. Collapsing whitespace first changes no PTB token.
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    lines = {
        key: [{"caption": " ".join(caption.split())} for caption in group] for key, group in captions.items()
    }
    return PTBTokenizer().tokenize(lines)


@contextmanager
def _ptb_temp_files_removed() -> Iterator[None]:
    """Remove the temporary file pycocoevalcap's PTB tokenizer leaves in its package folder when
    it is interrupted between writing and deleting it."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    folder = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    before = set(os.listdir(folder))
    try:
        yield
    except BaseException:
        for name in set(os.listdir(folder)) - before:
            if name.startswith("tmp"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
        raise


def _spice_scorer() -> _Scorer:
    from pycocoevalcap.spice.spice import Spice

    scorer = Spice()

    def score(references: _Captions, predictions: _Captions) -> list[float]:
        try:
            return [scorer.compute_score(references, predictions)[0]]
        except subprocess.CalledProcessError as error:
            raise ConfigError(
                f"SPICE failed (java exited with status {error.returncode}); SPICE 1.0 was built for Java 8, "
                "is known to fail on Java 17 and later, and asks for 8 GB of heap; pass spice=False to skip it"
            ) from error

    return score


def _close_meteor(meteor: Any) -> None:
    """Stop pycocoevalcap's METEOR Java process now, whatever state the wrapper is in.

    The wrapper holds a lock while it talks to Java and takes it again in ``__del__``; a signal
    that arrives mid-``compute_score`` leaves the lock held, so the garbage collector would
    later block forever in ``__del__``. Releasing it here and stopping the process ourselves
    makes that ``__del__`` a no-op instead of a hang.
    """
    if meteor.lock.locked():
        meteor.lock.release()
    process = meteor.meteor_p
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    process.kill()
    process.wait()


@contextmanager
def _scorers(use_spice: bool) -> Iterator[list[tuple[tuple[str, ...], _Scorer]]]:
    """The scorers of the COCO caption evaluation, each with the names of the values it returns.

    METEOR starts one Java process (loading its paraphrase table takes several seconds), so the
    scorers are built once per call and reused across NoCaps domains; the process is stopped
    when the block ends, also when a signal ends it.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    meteor = Meteor()
    scorers: list[tuple[tuple[str, ...], _Scorer]] = [
        (
            ("bleu1", "bleu2", "bleu3", "bleu4"),
            lambda refs, preds: Bleu(4).compute_score(refs, preds, verbose=0)[0],
        ),
        (("meteor",), lambda refs, preds: [meteor.compute_score(refs, preds)[0]]),
        (("rouge_l",), lambda refs, preds: [Rouge().compute_score(refs, preds)[0]]),
        (("cider",), lambda refs, preds: [Cider().compute_score(refs, preds)[0]]),
    ]
    if use_spice:
        scorers.append((("spice",), _spice_scorer()))
    try:
        yield scorers
    finally:
        _close_meteor(meteor)


def _score_subsets(
    predictions: Mapping[Hashable, str],
    references: _Captions,
    subsets: Mapping[str, Sequence[Hashable]],
    spice: bool | None,
) -> dict[str, float]:
    """Score each named subset of examples separately; keys are the subset's prefix + metric name."""
    use_spice = _use_spice(spice)
    _require_java()
    results: dict[str, float] = {}
    # Java children (the PTB tokenizer, METEOR, SPICE) die with an interrupted scoring instead
    # of running on after the harness has exited.
    with reap_new_children(), _ptb_temp_files_removed():
        tokenized_refs = _tokenize(references)
        tokenized_preds = _tokenize({key: [caption] for key, caption in predictions.items()})
        with _scorers(use_spice) as scorers:
            for prefix, ids in subsets.items():
                refs = {key: tokenized_refs[key] for key in ids}
                preds = {key: tokenized_preds[key] for key in ids}
                for names, scorer in scorers:
                    values = scorer(refs, preds)
                    results.update({prefix + name: 100.0 * float(v) for name, v in zip(names, values, strict=True)})
    return results


def caption_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    spice: bool | None = None,
) -> dict[str, float]:
    """COCO caption metrics of generated captions against reference captions, in percent.

    All captions go through pycocoevalcap's PTB tokenizer (lowercase, punctuation removed), then
    BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D, and SPICE when wanted and available. Values are
    multiplied by 100, the scale of the BLIP paper (CIDEr 133.3, BLEU-4 39.7). CIDEr's document
    frequencies come from the references being scored, so it is only meaningful over a real test
    set (a single example always gets CIDEr 0).

    Parameters
    ----------
    predictions : mapping of example id -> str
        One generated caption per example.
    references : mapping of example id -> list of str
        The reference captions of each example; its ids must be exactly those of ``predictions``.
    spice : bool or None
        ``True``: compute SPICE (raises :class:`~harness.errors.ConfigError` if its Stanford
        CoreNLP models are not installed); ``False``: skip it; ``None`` (default): compute it when
        the models are installed, otherwise skip it with a one-line warning.

    Returns
    -------
    scores : dict
        ``bleu1, bleu2, bleu3, bleu4, meteor, rouge_l, cider`` and, when computed, ``spice``.

    Raises
    ------
    ValueError
        The ids of ``predictions`` and ``references`` differ, or a caption is not a string.
    harness.errors.ConfigError
        Java is not on PATH, or SPICE was requested but cannot run.

    Examples
    --------
    >>> preds = {"1": "A man riding a horse.", "2": "two dogs play in the grass"}
    >>> refs = {"1": ["a man riding a horse"], "2": ["two dogs play in the grass"]}
    >>> s = caption_scores(preds, refs, spice=False)  # doctest: +SKIP
    >>> round(s["bleu4"], 1), s["meteor"], s["rouge_l"]  # doctest: +SKIP
    (100.0, 100.0, 100.0)

    References
    ----------
    Chen et al., "Microsoft COCO Captions: Data Collection and Evaluation Server", 2015;
    Papineni et al. 2002 (BLEU); Banerjee and Lavie 2005 (METEOR); Lin 2004 (ROUGE-L);
    Vedantam et al. 2015 (CIDEr); Anderson et al. 2016 (SPICE); github.com/salaniz/pycocoevalcap.
    """
    _check_captions(predictions, references)
    return _score_subsets(predictions, references, {"": list(predictions)}, spice)


def nocaps_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    domains: Mapping[Hashable, str],
    spice: bool | None = None,
) -> dict[str, float]:
    """NoCaps caption metrics for each domain and overall, as the NoCaps evaluation reports them.

    Each domain's images are scored as a separate test set (CIDEr's document frequencies come from
    that domain's references alone), and the whole set once more for ``overall_*``.

    Parameters
    ----------
    predictions, references, spice
        As for :func:`caption_scores`.
    domains : mapping of example id -> str
        ``"in-domain"``, ``"near-domain"`` or ``"out-domain"`` for every example of
        ``predictions`` (extra ids are ignored).

    Returns
    -------
    scores : dict
        The keys of :func:`caption_scores` prefixed with ``in_``, ``near_``, ``out_`` and
        ``overall_`` (e.g. ``in_cider``, ``near_spice``, ``overall_bleu4``). A domain without any
        example gets no keys.

    Examples
    --------
    >>> s = nocaps_scores(preds, refs, {"1": "in-domain", "2": "out-domain"})  # doctest: +SKIP
    >>> sorted(k for k in s if k.endswith("cider"))  # doctest: +SKIP
    ['in_cider', 'out_cider', 'overall_cider']

    References
    ----------
    Agrawal et al., "nocaps: novel object captioning at scale", ICCV 2019; BLIP (ICML 2022),
    Table 7.
    """
    _check_captions(predictions, references)
    subsets: dict[str, list[Hashable]] = {f"{prefix}_": [] for prefix in NOCAPS_DOMAINS.values()}
    for example_id in predictions:
        if example_id not in domains:
            raise ValueError(f"example {example_id!r} has no domain in domains")
        domain = domains[example_id]
        if domain not in NOCAPS_DOMAINS:
            raise ValueError(
                f"example {example_id!r} has domain {domain!r}; expected one of {sorted(NOCAPS_DOMAINS)}"
            )
        subsets[f"{NOCAPS_DOMAINS[domain]}_"].append(example_id)
    named = {prefix: ids for prefix, ids in subsets.items() if ids}
    named["overall_"] = list(predictions)
    return _score_subsets(predictions, references, named, spice)


def cider_per_example(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> dict[Hashable, float]:
    """CIDEr-D of each generated caption against its own references, in percent.

    Document frequencies come from all the ``references`` given, as in :func:`caption_scores`,
    whose ``cider`` is the mean of these values; so an example's value says how it contributed
    to the split's CIDEr, which is how ``harness report`` finds the worst captions.

    Parameters
    ----------
    predictions, references
        As for :func:`caption_scores`.

    Returns
    -------
    scores : dict
        Example id -> CIDEr-D in percent (a caption equal to its single reference, sharing no
        n-gram with other examples' references, scores 1000: ten times the mean cosine of 1).

    Examples
    --------
    >>> cider_per_example(  # doctest: +SKIP
    ...     {"1": "red cube on grass", "2": "blue sky with clouds"},
    ...     {"1": ["red cube on grass"], "2": ["a dog runs fast"]})
    {'1': 1000.0, '2': 0.0}

    References
    ----------
    Vedantam et al., "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015;
    github.com/salaniz/pycocoevalcap (``cider_scorer.py``).
    """
    from pycocoevalcap.cider.cider import Cider

    _check_captions(predictions, references)
    _require_java()
    tokenized_refs = _tokenize(references)
    tokenized_preds = _tokenize({key: [caption] for key, caption in predictions.items()})
    _, scores = Cider().compute_score(tokenized_refs, tokenized_preds)
    return {key: 100.0 * float(value) for key, value in zip(tokenized_refs, scores, strict=True)}
