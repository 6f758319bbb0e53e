"""Published baselines: the repository's table validates against its schema and the task names,
loading errors name the file and the row, and the built-in hook registers the table."""

from __future__ import annotations

from pathlib import Path

import pytest
from result_fixtures import baseline_data, write_baselines

import harness
from harness import baselines as baselines_module
from harness.baselines import (
    BASELINE_SCHEMA,
    builtin_baseline_dir,
    load_baseline_file,
    load_baseline_files,
    select_baselines,
)
from harness.errors import ConfigError, DataError
from harness.registry import Registry, make_plugin_manager
from harness_tasks.specs import TASK_SPECS

REPO = Path(__file__).resolve().parents[1]
BLIP_PAPER = REPO / "results" / "baselines" / "blip_paper.json"
BLIP2_PAPER = REPO / "results" / "baselines" / "blip2_paper.json"


def test_blip_paper_table_loads_and_uses_harness_task_names():
    table = load_baseline_file(BLIP_PAPER)
    assert table.name == "blip_paper" and len(table.rows) == 112
    tasks = {spec.name: spec for spec in TASK_SPECS}
    assert {row.task for row in table.rows} <= set(tasks)
    nocaps = table.rows_for("nocaps", "val")
    assert len(nocaps) == 10
    blip = next(row for row in nocaps if row.model == "BLIP (129M)")
    assert blip.metrics["overall_cider"] == 106.3 and blip.source.endswith("Table 7")
    coco = next(r for r in table.rows_for("coco_retrieval", "karpathy_test_5k") if r.model == "BLIP (129M)")
    assert coco.metrics == {"txt_r1": 81.9, "txt_r5": 95.4, "txt_r10": 97.8, "img_r1": 64.3, "img_r5": 85.7, "img_r10": 91.5}


def test_blip2_paper_table_holds_the_checked_figures():
    table = load_baseline_file(BLIP2_PAPER)
    assert table.name == "blip2_paper"
    coco = next(r for r in table.rows_for("coco_retrieval", "karpathy_test_5k") if r.model == "BLIP-2 ViT-g")
    assert coco.metrics == {"txt_r1": 85.4, "txt_r5": 97.0, "txt_r10": 98.5, "img_r1": 68.3, "img_r5": 87.7, "img_r10": 92.6}
    caption = next(r for r in table.rows_for("coco_captioning", "karpathy_test") if r.model == "BLIP-2 ViT-g OPT-2.7B")
    assert caption.metrics == {"bleu4": 43.7, "cider": 145.8}
    assert table.rows_for("vqav2", "test_dev")[0].metrics == {"accuracy": 65.0}


@pytest.mark.parametrize("path", [BLIP_PAPER, BLIP2_PAPER], ids=lambda p: p.stem)
def test_every_row_split_is_a_task_split_or_a_test_server_split(path):
    """Rows are shown beside runs of the same task and split, so a split name that matches no
    harness split would never be shown; VQA test-dev/test-std are scored by the EvalAI server."""
    splits = {spec.name: set(spec.splits) for spec in TASK_SPECS}
    server_splits = {("vqav2", "test_dev"), ("vqav2", "test_std")}
    for row in load_baseline_file(path).rows:
        assert row.split in splits[row.task] or (row.task, row.split) in server_splits, row


def _write(tmp_path: Path, data) -> Path:
    return write_baselines(tmp_path / "table.json", data)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="harness.baselines/0"), "field 'schema' must be 'harness.baselines/1'"),
        (lambda d: d.pop("name"), "field 'name' must be a non-empty string"),
        (lambda d: d.update(rows=[]), "field 'rows' must be a non-empty list"),
        (lambda d: d["rows"][1]["metrics"].update(acc="60"), "rows[1] ('Beta (2M)'): metric 'acc' must be a number, got '60'"),
        (lambda d: d["rows"][1].pop("source"), "rows[1] ('Beta (2M)'): missing 'source'"),
        (lambda d: d["rows"][0].update(score=1), "rows[0] ('Alpha (1M)'): unknown field(s) ['score']"),
        (lambda d: d["rows"][0].update(metrics={}), "rows[0] ('Alpha (1M)'): 'metrics' must be a non-empty object"),
        (lambda d: d["rows"][2].update(split=""), "rows[2] ('Gamma (other split)'): 'split' must be a non-empty string"),
        (lambda d: d["rows"].append(dict(d["rows"][0])), "rows[4] ('Alpha (1M)'): a second row for model 'Alpha (1M)'"),
        (lambda d: d["rows"].append("row"), "rows[4]: a row must be an object"),
    ],
)
def test_invalid_files_name_the_file_and_row(tmp_path, mutate, message):
    data = baseline_data()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as caught:
        load_baseline_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="baseline file not found"):
        load_baseline_file(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{\n")
    with pytest.raises(DataError, match=r"broken\.json: baseline file is not valid JSON \(line 2"):
        load_baseline_file(tmp_path / "broken.json")


def test_two_files_with_one_table_name_are_refused(tmp_path):
    first = write_baselines(tmp_path / "a.json")
    second = write_baselines(tmp_path / "b.json")
    with pytest.raises(DataError, match="'toy_paper' is defined twice"):
        load_baseline_files([first, second])
    assert len(load_baseline_files([first, first])) == 1


def test_selection_by_name_or_path(tmp_path):
    tables = load_baseline_files([BLIP_PAPER, write_baselines(tmp_path / "a.json")])
    assert [t.name for t in select_baselines(tables, None)] == ["blip_paper", "toy_paper"]
    assert [t.name for t in select_baselines(tables, ["toy_paper"])] == ["toy_paper"]
    other = write_baselines(tmp_path / "other.json", baseline_data(name="other"))
    assert [t.name for t in select_baselines(tables, [str(other)])] == ["other"]
    with pytest.raises(ConfigError, match=r"unknown baseline table 'blip_papr'; did you mean 'blip_paper'"):
        select_baselines(tables, ["blip_papr"])


def test_the_builtin_hook_registers_the_repository_table():
    plugin_manager = make_plugin_manager(load_entry_points=False)
    plugin_manager.register(baselines_module)
    registry = Registry(plugin_manager).collect()
    assert [p.resolve() for p in registry.baseline_files] == [BLIP2_PAPER.resolve(), BLIP_PAPER.resolve()]


def test_installed_wheel_falls_back_to_package_data(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "harness"
    package.mkdir(parents=True)
    monkeypatch.setattr(harness, "__file__", str(package / "__init__.py"))
    assert builtin_baseline_dir() == package / "baselines_data"
    monkeypatch.undo()
    assert builtin_baseline_dir() == REPO / "results" / "baselines"


def test_schema_constant_matches_the_readme():
    readme = (REPO / "results" / "baselines" / "README.md").read_text()
    assert f'"schema": "{BASELINE_SCHEMA}"' in readme
