"""``harness capfilt`` end to end in subprocesses with blip-tiny as captioner and filter, on small
img2dataset-style shards: readable output shards, statistics that add up, the histogram; a run
killed after its first shard resumes without redoing it; torchrun with 2 processes writes what
one process writes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import webdataset as wds
from cli_process import harness_command, harness_env, kill_tree, run_harness, start, torchrun_command
from web_shards import CORRUPT_KEY, write_web_shards

pytestmark = pytest.mark.slow

SHARDS, PER_SHARD, CAPTIONS = 3, 3, 2


@pytest.fixture(scope="module")
def web_input(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("web")
    write_web_shards(toy_root, folder, shards=SHARDS, per_shard=PER_SHARD)
    return str(folder / f"{{00000..{SHARDS - 1:05d}}}.tar")


def capfilt_args(web_input: str, output: Path) -> list[str]:
    return ["capfilt", "--captioner", "blip-tiny", "--filter", "blip-tiny", "--input", web_input,
            "--output", str(output), "--captions-per-image", str(CAPTIONS), "--batch-size", "2",
            "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def reference(web_input: str, toy_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One uninterrupted single-process run: (output directory, stdout)."""
    output = tmp_path_factory.mktemp("capfilt") / "out"
    done = run_harness(capfilt_args(web_input, output), toy_cache)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return output, done.stdout


def output_files(output: Path) -> dict[str, bytes]:
    """Every output file's bytes except the settings (rewritten by each start)."""
    names = ["capfilt.json", "capfilt_scores.png", *(f"shards/{p.name}" for p in sorted((output / "shards").iterdir()))]
    return {name: (output / name).read_bytes() for name in names}


def test_shards_read_back_and_the_counts_add_up(reference: tuple[Path, str]) -> None:
    output, stdout = reference
    samples = []
    for shard in range(SHARDS):
        samples += list(wds.WebDataset(str(output / "shards" / f"{shard:05d}.tar"), shardshuffle=False))
    keys = [s["__key__"] for s in samples]
    expected_keys = [f"{shard:05d}{position:04d}" for shard in range(SHARDS) for position in range(PER_SHARD)]
    assert keys == [k for k in expected_keys if k != CORRUPT_KEY]
    stats = json.loads((output / "capfilt.json").read_text())
    images = len(keys)
    assert stats["samples"] == {"input": SHARDS * PER_SHARD, "images": images, "bad": 1,
                                "images_with_kept_text": sum(bool(json.loads(s["json"])["texts"]) for s in samples)}
    assert stats["bad_examples"][0]["key"] == CORRUPT_KEY
    web, synthetic = stats["sources"]["web"], stats["sources"]["synthetic"]
    assert web["texts"] == images and synthetic["texts"] == images * CAPTIONS
    assert stats["sources"]["synthetic/blip-tiny/round1"]["texts"] == synthetic["texts"]
    kept_in_shards = 0
    for sample in samples:
        body = json.loads(sample["json"])
        assert sample["jpg"][:2] == b"\xff\xd8"  # the image bytes, unchanged JPEG
        assert [t["source"] for t in body["scored"]] == ["web"] + ["synthetic"] * CAPTIONS
        for text in body["scored"]:
            assert text["kept"] == (text["score"] >= 0.5)
        assert body["texts"] == [{k: v for k, v in t.items() if k != "kept"} for t in body["scored"] if t["kept"]]
        kept_in_shards += len(body["texts"])
    assert web["kept"] + synthetic["kept"] == stats["texts"]["kept"] == kept_in_shards
    assert stats["texts"]["scored"] == web["texts"] + synthetic["texts"]
    assert stats["noise_ratio"] == pytest.approx(1 - synthetic["kept"] / synthetic["texts"], abs=1e-6)
    assert sum(synthetic["scores"]["histogram"]["counts"]) == synthetic["texts"]
    assert stats["diversity"]["captions"] == synthetic["texts"] and stats["diversity"]["mbleu4"] is not None
    assert stats["settings"]["threshold"] == "0.5" and stats["settings"]["filter_score"] == "itm"
    assert len(stats["models"]["filter"]["files"][0]["sha256"]) == 64
    assert (output / "capfilt_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stdout.strip().splitlines()[-1].startswith(f"capfilt: {images} images (1 bad) in {SHARDS} shards")


def test_a_killed_run_resumes_without_redoing_finished_shards(
    reference: tuple[Path, str], web_input: str, toy_cache: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    first = output / "shards" / "00000.json"
    proc = start(harness_command(capfilt_args(web_input, output)), toy_cache)
    try:
        deadline = time.monotonic() + 240
        while not first.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no shard written in time"
            time.sleep(0.02)
        kill_tree(proc)
        proc.wait()
    finally:
        if proc.poll() is None:
            kill_tree(proc)
            proc.wait()
    assert not (output / "capfilt.json").exists(), "the run was not stopped midway"
    tars = [p.with_suffix(".tar") for p in (output / "shards").glob("*.json")]
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tars}
    done = run_harness(capfilt_args(web_input, output)[:-1], toy_cache)
    assert done.returncode == 0, done.stderr
    assert f"{len(finished)} of {SHARDS} shards already finished" in done.stdout
    for name, identity in finished.items():
        path = output / "shards" / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == identity, f"{name} was written again"
        assert f"shard {Path(name).stem} (" not in done.stdout
    assert output_files(output) == output_files(reference[0])


def test_two_processes_write_what_one_writes(reference: tuple[Path, str], web_input: str, toy_cache: Path,
                                            tmp_path: Path) -> None:
    output = tmp_path / "out"
    done = subprocess.run(torchrun_command(2, capfilt_args(web_input, output)), capture_output=True, text=True,
                          timeout=400, env=harness_env(toy_cache))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("capfilt: ") == 1  # one summary, from process 0
    assert output_files(output) == output_files(reference[0])


def test_other_settings_in_the_same_output_are_refused(reference: tuple[Path, str], web_input: str,
                                                      toy_cache: Path) -> None:
    args = capfilt_args(web_input, reference[0])
    args[args.index("--captions-per-image") + 1] = "5"
    done = run_harness(args, toy_cache)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "captions_per_image differ" in done.stderr


def test_the_toy_web_split_is_captioned_and_filtered(toy_root: Path, toy_cache: Path, tmp_path: Path) -> None:
    """The toy suite's own img2dataset-style split (60 images, planted noise): every image comes
    back with its key, and the filter keeps far fewer of the planted-noise alt-texts than of the
    true ones."""
    output = tmp_path / "out"
    shards = toy_root / "web" / "shards"
    done = run_harness(capfilt_args(str(shards / "{00000..00001}.tar"), output), toy_cache)
    assert done.returncode == 0, done.stderr
    truth = {row["key"]: row for row in json.loads((toy_root / "web" / "web_labels.json").read_text())}
    samples = [s for shard in sorted((output / "shards").glob("*.tar")) for s in wds.WebDataset(str(shard), shardshuffle=False)]
    assert sorted(s["__key__"] for s in samples) == sorted(truth)
    kept = {True: [], False: []}
    for sample in samples:
        (web,) = [t for t in json.loads(sample["json"])["scored"] if t["source"] == "web"]
        kept[bool(truth[sample["__key__"]]["label"])].append(web["kept"])
    assert sum(kept[True]) / len(kept[True]) > sum(kept[False]) / len(kept[False]) + 0.3
    stats = json.loads((output / "capfilt.json").read_text())
    assert stats["samples"]["images"] == len(truth) and stats["sources"]["web"]["texts"] == len(truth)
