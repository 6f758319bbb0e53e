"""The registry: entry-point loading, did-you-mean look-ups, and the capability check."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import hookimpl
from harness.errors import CapabilityError, ConfigError
from harness.registry import Registry, check_instance, get_registry, make_plugin_manager
from harness.specs import ModelSpec, TaskSpec

BUILTIN_TASKS = {
    "coco_retrieval", "flickr30k_retrieval", "flickr30k_retrieval_zeroshot", "coco_captioning",
    "nocaps", "vqav2", "nlvr2", "visdial", "msrvtt_retrieval", "msrvtt_qa", "msvd_qa",
}


def test_builtins_load_through_entry_points() -> None:
    registry = get_registry().collect()
    assert BUILTIN_TASKS <= set(registry.tasks)
    assert {"blip", "blip-large", "blip-tiny", "clip"} <= set(registry.models)
    names = {name for name, _ in registry.pm.list_name_plugin()}
    assert {"blip", "clip", "tasks", "baselines"} <= names


class _ItcOnly:
    """A plugin-defined model with one capability, registered straight on the plugin manager."""

    @hookimpl
    def harness_register_models(self, registry: Registry) -> None:
        registry.add_model(ModelSpec(
            name="itc-only", factory=lambda request: object(), description="test model",
            capabilities=("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder"),
        ))


def _registry_with_test_plugin() -> Registry:
    pm = make_plugin_manager()
    pm.register(_ItcOnly(), name="test-itc-only")
    return Registry(pm).collect()


def test_capability_mismatch_names_the_missing_capability() -> None:
    registry = _registry_with_test_plugin()
    with pytest.raises(CapabilityError, match="'itc-only' cannot run 'nlvr2': it lacks PairVerifier"):
        registry.check_fit(registry.model("itc-only"), registry.task("nlvr2"))
    registry.check_fit(registry.model("itc-only"), registry.task("coco_retrieval"))


def test_built_object_must_implement_what_the_spec_declares() -> None:
    registry = _registry_with_test_plugin()
    with pytest.raises(CapabilityError, match="does not implement ImagePreprocessor"):
        check_instance(object(), "itc-only", registry.task("coco_retrieval"))


@pytest.mark.parametrize(("kind", "name", "hint"), [("model", "blip-tiyn", "blip-tiny"), ("task", "nlvr", "nlvr2")])
def test_unknown_names_get_did_you_mean(kind: str, name: str, hint: str) -> None:
    registry = get_registry()
    with pytest.raises(ConfigError, match=f"did you mean '{hint}'"):
        getattr(registry, kind)(name)


def test_all_resolves_every_task_and_lists_are_checked() -> None:
    registry = get_registry()
    assert {t.name for t in registry.resolve_tasks("all")} == set(registry.tasks)
    assert [t.name for t in registry.resolve_tasks("nlvr2, vqav2")] == ["nlvr2", "vqav2"]
    with pytest.raises(ConfigError):
        registry.resolve_tasks(" , ")


def test_unknown_capability_and_duplicates_are_refused() -> None:
    registry = Registry(make_plugin_manager(load_entry_points=False))
    spec = ModelSpec(name="m", factory="x:y", description="", capabilities=("Telepathy",))
    with pytest.raises(ConfigError, match="unknown capabilities"):
        registry.add_model(spec)
    task = TaskSpec(name="t", factory="x:y", description="", capabilities=(), protocol={},
                    splits=("test",), default_split="test", data_dir="t")
    registry.add_task(task)
    with pytest.raises(ConfigError, match="registered twice"):
        registry.add_task(task)


def test_third_party_distribution_is_found_by_entry_point(tmp_path: Path) -> None:
    """A separately installed distribution (its own dist-info with a `harness` entry point) shows
    in `harness list` without any change to the harness."""
    site = tmp_path / "site"
    (site / "acme_vlm").mkdir(parents=True)
    (site / "acme_vlm" / "__init__.py").write_text(textwrap.dedent('''
        from harness import hookimpl
        from harness.specs import ModelSpec

        @hookimpl
        def harness_register_models(registry):
            registry.add_model(ModelSpec(
                name="acme-vlm", factory="acme_vlm:build", description="ACME test model",
                capabilities=("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder")))
    '''))
    dist = site / "acme_vlm-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-vlm\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[harness]\nacme = acme_vlm\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-m", "harness", "list", "models"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "acme-vlm" in out.stdout and "ACME test model" in out.stdout
    refused = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "acme-vlm",
                              "--task", "nlvr2", "--data", "toy"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "lacks PairVerifier" in refused.stderr and "Traceback" not in refused.stderr


def test_a_models_task_protocol_changes_apply_over_its_general_ones():
    spec = ModelSpec(
        name="m", factory="x:y", description="", capabilities=(),
        protocol_overrides={"image_size": 64, "num_beams": 3},
        task_protocol_overrides={"vqav2": {"image_size": 32, "prompt": "Q: {}"}},
    )
    assert spec.protocol_for("vqav2") == {"image_size": 32, "num_beams": 3, "prompt": "Q: {}"}
    assert spec.protocol_for("coco_retrieval") == {"image_size": 64, "num_beams": 3}
