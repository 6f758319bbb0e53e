"""How a record says to read it: the published row of the same model and the caveats come from the
model and task specs (data, not string checks), only the preset's own weights have a known row,
and toy or ``--limit`` runs are never comparable with published numbers."""

from __future__ import annotations

import pytest

from harness.baselines import registered_baselines
from harness.caveats import (
    TOY_CAVEAT,
    headline,
    interpretation_fields,
    not_comparable_reason,
    protocol_changes,
)
from harness.config import merge_protocol
from harness.registry import get_registry
from harness.specs import Caveat


@pytest.fixture(scope="module")
def registry():
    return get_registry().collect()


def _fields(registry, model: str, task: str, split: str, **options):
    model_spec, task_spec = registry.model(model), registry.tasks[task]
    user = options.pop("set", {})
    protocol = merge_protocol(task, task_spec.protocol, model_spec.protocol_overrides, user)
    defaults = {"weights": None, "toy": False, "limit": None, "user_keys": user}
    return interpretation_fields(model_spec, task_spec, split, protocol, **{**defaults, **options})


def test_blip_on_vqa_val_records_its_row_and_that_val_was_trained_on(registry):
    fields = _fields(registry, "blip", "vqav2", "val")
    assert fields["baseline_row"] == {"table": "blip_paper", "model": "BLIP (129M)"}
    (caveat,) = fields["caveats"]
    assert "fine-tuned on VQA v2 train and val" in caveat and "test-dev" in caveat
    assert fields["headline_metrics"] == ["accuracy"] and fields["protocol_changes"] == {}
    # The test split has the server caveat instead; the trained-on-val caveat is for val only.
    assert not any("train and val" in c for c in _fields(registry, "blip", "vqav2", "test")["caveats"])


def test_each_preset_names_the_row_of_its_own_weights(registry):
    assert _fields(registry, "blip", "coco_captioning", "karpathy_test")["baseline_row"]["model"] == "BLIP CapFilt-L (129M)"
    assert _fields(registry, "blip-large", "coco_retrieval", "karpathy_test_5k")["baseline_row"]["model"] == "BLIP ViT-L (129M)"
    assert _fields(registry, "blip-large", "vqav2", "val")["baseline_row"]["model"] == "BLIP CapFilt-L (129M)"
    visdial = _fields(registry, "blip", "visdial", "v1.0_val")
    assert visdial["baseline_row"] is None and "zero-shot" in visdial["caveats"][0]
    assert _fields(registry, "blip-tiny", "vqav2", "val")["baseline_row"] is None


def test_other_weights_have_no_known_row_and_no_preset_caveats(registry):
    fields = _fields(registry, "blip", "vqav2", "val", weights="/ckpt/my_finetune")
    assert fields["baseline_row"] is None and fields["caveats"] == []


def test_every_named_row_exists_in_a_registered_table(registry):
    """A preset's row must be a real published row of that task, or compare would have no deltas."""
    published = {(table.name, row.model, row.task) for table in registered_baselines() for row in table.rows}
    named = [(spec.name, task, row) for spec in registry.models.values() for task, row in spec.baseline_rows.items()]
    assert named, "the BLIP presets name their rows"
    for model, task, row in named:
        assert (row.table, row.model, task) in published, f"{model} on {task}: {row} is not published"


def test_task_caveats_apply_to_their_split(registry):
    nocaps = _fields(registry, "blip-tiny", "nocaps", "val")
    assert any("NoCaps val" in c and "test split" in c for c in nocaps["caveats"])
    caveat = Caveat("x", tasks=("a",), splits=("val",))
    assert caveat.applies("a", "val") and not caveat.applies("a", "test") and not caveat.applies("b", "val")
    assert Caveat("y").applies("any", "split")


def test_toy_and_limit_make_a_run_not_comparable(registry):
    fields = _fields(registry, "blip-tiny", "vqav2", "val", toy=True, limit=6)
    assert fields["caveats"][:2] == [TOY_CAVEAT, fields["caveats"][1]] and "--limit 6" in fields["caveats"][1]
    assert not_comparable_reason({"data": {"toy": True}, "samples": {"limit": None}}) == TOY_CAVEAT
    assert "--limit 3" in not_comparable_reason({"data": {"toy": False}, "samples": {"limit": 3}})
    assert not_comparable_reason({"data": {"toy": False}, "samples": {"limit": None}}) is None


def test_protocol_changes_are_the_users_not_the_models(registry):
    tiny, task = registry.model("blip-tiny"), registry.tasks["vqav2"]
    user = {"k_test": 16, "num_beams": 3}
    protocol = merge_protocol("vqav2", task.protocol, tiny.protocol_overrides, user)
    # image_size=64 is blip-tiny's own adjustment and num_beams=3 the default: neither is a change.
    assert protocol_changes(protocol, task, tiny, user) == {"k_test": 16}
    # A default the task resolves itself (retrieval's rerank=auto becomes true) is no change either.
    retrieval = registry.tasks["coco_retrieval"]
    resolved = {**merge_protocol("coco_retrieval", retrieval.protocol, tiny.protocol_overrides, {}), "rerank": True}
    assert protocol_changes(resolved, retrieval, tiny, {}) == {}
    assert _fields(registry, "blip-tiny", "vqav2", "val", set={"k_test": 16})["protocol_changes"] == {"k_test": 16}


def test_headline_keeps_the_task_order_and_falls_back_to_every_metric():
    record = {"metrics": {"bleu4": 1.0, "cider": 2.0, "meteor": 3.0}, "headline_metrics": ["cider", "spice", "bleu4"]}
    assert headline(record) == ["cider", "bleu4"]  # no SPICE without CoreNLP: skipped, not invented
    assert headline({"metrics": {"a": 1.0, "b": 2.0}}) == ["a", "b"]


def test_list_shows_each_presets_published_rows(capsys):
    from harness.cli import main

    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "published rows (deltas in `harness compare`): BLIP (129M) (blip_paper): coco_retrieval," in out
    assert "BLIP CapFilt-L (129M) (blip_paper): coco_captioning, nocaps" in out
