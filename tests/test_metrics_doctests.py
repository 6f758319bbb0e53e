"""The Examples sections of the metric docstrings are real numbers; keep them true."""

from __future__ import annotations

import doctest

import pytest

from harness.metrics import captioning, classification, dialog, diversity, filtering, retrieval, vqa


@pytest.mark.parametrize(
    "module", [retrieval, vqa, classification, dialog, captioning, diversity, filtering], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if module is not captioning:  # its examples need Java and are covered by test_metrics_captioning
        assert result.attempted > 0
