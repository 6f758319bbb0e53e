import json
import os
from pathlib import Path

import pytest

from harness.annotations import (
    check_unique_ids,
    fingerprint,
    read_json,
    read_jsonl,
    require_fields,
    resolve_media_path,
)
from harness.errors import DataError


def test_read_json_parses_and_names_position_of_malformed_json(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"image": "a.jpg"}]))
    assert read_json(good) == [{"image": "a.jpg"}]

    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"image": "a.jpg",}\n]')
    with pytest.raises(DataError, match=r"bad\.json: line 2 column \d+: malformed JSON"):
        read_json(bad)


def test_read_json_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"missing\.json: annotation file not found"):
        read_json(tmp_path / "missing.json")


def test_read_jsonl_skips_blank_lines_and_names_bad_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"clip_name": "v1", "caption": "x"}\n\n{"clip_name": "v2", "caption": "y"}\n')
    assert [r["clip_name"] for r in read_jsonl(path)] == ["v1", "v2"]

    path.write_text('{"clip_name": "v1"}\n{"clip_name": \n')
    with pytest.raises(DataError, match=r"a\.jsonl: line 2 column"):
        read_jsonl(path)


def test_require_fields_accepts_matching_record(tmp_path):
    require_fields(
        {"image": "a.jpg", "caption": ["x", "y"], "label": True, "score": 1},
        {"image": str, "caption": (str, list[str]), "label": bool, "score": float},
        tmp_path / "f.json",
        0,
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"image": "a.jpg"}, r"f\.json: record 3: field 'caption' missing \(expected list of str\)"),
        ({"image": "a.jpg", "caption": "one"}, r"record 3: field 'caption' has type str \(expected list of str\)"),
        ({"image": "a.jpg", "caption": ["ok", 5]}, r"field 'caption' has type list \(expected list of str\)"),
        ({"image": 7, "caption": []}, r"field 'image' has type int \(expected str\)"),
        (["image"], r"record 3: expected a JSON object, got list"),
    ],
)
def test_require_fields_names_file_record_and_expectation(tmp_path, record, message):
    with pytest.raises(DataError, match=message):
        require_fields(record, {"image": str, "caption": list[str]}, tmp_path / "f.json", 3)


def test_require_fields_does_not_take_booleans_for_numbers(tmp_path):
    with pytest.raises(DataError, match=r"field 'question_id' has type bool \(expected int\)"):
        require_fields({"question_id": True}, {"question_id": int}, tmp_path / "q.json", 0)


def test_fingerprint_depends_on_content_and_order(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("[1]")
    b.write_text("[2]")
    assert fingerprint([a, b]) == fingerprint([a, b])
    assert len(fingerprint([a])) == 64
    assert fingerprint([a, b]) != fingerprint([b, a])
    before = fingerprint([a])
    a.write_text("[3]")
    assert fingerprint([a]) != before
    with pytest.raises(DataError, match="nope.json"):
        fingerprint([tmp_path / "nope.json"])


def test_resolve_media_path_inside_root(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    resolved = resolve_media_path(root, "val2014/x.jpg", tmp_path / "ann.json", 0)
    assert resolved == (root / "val2014" / "x.jpg").resolve()
    # Not checked for existence; a '..' that stays inside the root is fine.
    assert resolve_media_path(root, "a/../b.jpg", tmp_path / "ann.json", 0) == (root / "b.jpg").resolve()


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("../secret.jpg", "escapes the media folder"),
        ("a/../../secret.jpg", "escapes the media folder"),
        ("/etc/passwd", "is absolute"),
        ("", "is empty"),
    ],
)
def test_resolve_media_path_refuses_escapes(tmp_path, relative, message):
    root = tmp_path / "images"
    root.mkdir()
    with pytest.raises(DataError, match=rf"ann\.json: record 4: media path .*{message}"):
        resolve_media_path(root, relative, tmp_path / "ann.json", 4)


def test_resolve_media_path_refuses_symlink_out_of_root(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(DataError, match="escapes the media folder"):
        resolve_media_path(root, "link/x.jpg", tmp_path / "ann.json", 0)


def test_check_unique_ids_names_duplicate(tmp_path):
    check_unique_ids(["a", "b", "c"], Path("x.json"))
    with pytest.raises(DataError, match=r"x\.json: duplicate sample id 'b' \(records 1 and 3\)"):
        check_unique_ids(["a", "b", "c", "b"], Path("x.json"))
