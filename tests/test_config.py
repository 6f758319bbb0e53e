"""Protocol merging and --set parsing."""

from __future__ import annotations

import pytest

from harness.config import merge_protocol, parse_overrides, resolve_precision
from harness.errors import ConfigError

DEFAULTS = {"k_test": 256, "image_size": 384, "prompt": "a picture of ", "sample": False, "top_p": 0.9}


def test_parse_overrides_reads_json_values_and_plain_strings() -> None:
    parsed = parse_overrides(["k_test=128", "sample=true", "prompt=a photo of ", "top_p=1", "x=[1, 2]"])
    assert parsed == {"k_test": 128, "sample": True, "prompt": "a photo of ", "top_p": 1, "x": [1, 2]}


@pytest.mark.parametrize("item", ["k_test", "=3", ""])
def test_malformed_set_is_refused(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides([item])


def test_merge_order_task_then_model_then_user() -> None:
    merged = merge_protocol("t", DEFAULTS, {"image_size": 64, "not_a_key": 1}, {"k_test": 16, "top_p": 1})
    assert merged == {**DEFAULTS, "image_size": 64, "k_test": 16, "top_p": 1.0}
    assert isinstance(merged["top_p"], float)


def test_unknown_key_gets_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="no protocol key 'k_tset'; did you mean 'k_test'"):
        merge_protocol("t", DEFAULTS, {}, {"k_tset": 3})


@pytest.mark.parametrize(("key", "value", "expected"), [("k_test", 1.5, "integer"), ("sample", 3, "true or false"), ("top_p", "x", "number")])
def test_override_must_have_the_default_type(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        merge_protocol("t", DEFAULTS, {}, {key: value})


def test_precision_defaults() -> None:
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ConfigError):
        resolve_precision("fp8", "cpu")
