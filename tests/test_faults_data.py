"""Fault classes of real data and real runs (issue 14, items 1, 5 and 6): the official files open as
shipped, every check runs before computing, and the output stays readable in logs.

Real files written by PIL, PyAV and zlib; real runs through the CLI's entry point.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
import zlib
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_process import copy_task_data, finished_records
from media_files import write_avi, write_image
from PIL import Image

from harness.cli import main
from harness.config import RunConfig
from harness.context import RunContext
from harness.cpu_threads import SMALL_MODEL_PARAMETERS, cpu_threads, parameter_count
from harness.errors import CapabilityError
from harness.media import image_format_note, load_image, load_video_frames, to_rgb
from harness.predictions import PredictionStore
from harness.quiet import silenced_output
from harness.runner import Runner
from harness.specs import ModelRequest
from harness_plugins.blip.presets import build_blip_tiny

NLVR2_FILE = "nlvr2/annotations/nlvr_test.json"
VQA_FILE = "vqav2/annotations/vqa_val.json"



pytestmark = pytest.mark.usefixtures("one_thread")


def run_args(data_root: Path, task: str, output: Path, *extra: str) -> list[str]:
    return ["run", "--model", "blip-tiny", "--task", task, "--data-root", str(data_root), "--output", str(output),
            "--device", "cpu", "--quiet", *extra]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def keep_records(path: Path, keep: int) -> list[dict]:
    records = json.loads(path.read_text())[:keep]
    path.write_text(json.dumps(records))
    return records


# -- images are identified by their content -------------------------------------------------------


def test_a_jpeg_named_png_loads_by_its_content_with_a_note(tmp_path: Path) -> None:
    path = write_image(tmp_path / "dev-850-0-img0.png", colour=(40, 120, 220), fmt="JPEG")
    with Image.open(path) as image:
        blip_pixels = np.asarray(image.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(path)), blip_pixels)
    assert "content is JPEG although the extension '.png' says PNG" in image_format_note(path)
    assert image_format_note(write_image(tmp_path / "fine.png", fmt="PNG")) is None


def test_nlvr2_with_jpegs_named_png_checks_clean_and_runs_without_skipping(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy_task_data(toy_root, "nlvr2", tmp_path / "data")
    records = keep_records(data / NLVR2_FILE, 3)
    renamed = data / "nlvr2/images" / records[0]["images"][0]
    with Image.open(renamed) as image:
        image.convert("RGB").save(renamed, format="JPEG")

    assert main(["data", "check", "--task", "nlvr2", "--data-root", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"note: {renamed}: content is JPEG" in out
    assert "0 problem(s)" in out

    code = main(run_args(data, "nlvr2", tmp_path / "runs", "--skip-bad"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/result.json")]
    assert record["samples"]["skipped"] == 0 and record["samples"]["evaluated"] == 3


def _png_16bit(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB or RGBA PNG, written byte by byte (PIL cannot write these modes)."""
    height, width, channels = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_16_bit_grayscale_png_decodes_to_its_pixels_not_white(tmp_path: Path) -> None:
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")
    rgb = np.asarray(load_image(path))
    expected = (values >> 8).astype(np.uint8)
    for channel in range(3):
        assert np.array_equal(rgb[..., channel], expected)
    assert rgb.min() == 0 and rgb.max() == 63000 >> 8


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_wide_integer_modes_scale_the_same_way(mode: str) -> None:
    values = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)
    if mode == "I;16B":
        image = Image.frombytes(mode, (5, 1), values.astype(">u2").tobytes())
    else:
        image = Image.fromarray(values.astype(np.int32))
    assert image.mode == mode
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 0, 1, 156, 255]


def test_float_images_in_the_unit_range_are_scaled() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(image))[0, :, 1].tolist() == [0, 128, 255]


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_pngs_keep_their_high_byte(tmp_path: Path, channels: int) -> None:
    pixels = np.zeros((4, 4, channels), dtype=np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 0xFFFF, 0x8000, 0x12FF
    if channels == 4:
        pixels[..., 3] = 0x0100  # nearly transparent: dropped, as BLIP's convert("RGB") drops it
    path = tmp_path / "colour16.png"
    path.write_bytes(_png_16bit(pixels))
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 128, 0x12]


def _palette_with_transparency(path: Path) -> None:
    image = Image.new("P", (6, 6))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 3, 6))
    image.info["transparency"] = b"\x00\xff"
    image.save(path, transparency=b"\x00\xff")


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("cmyk.jpg", lambda path: Image.new("CMYK", (6, 6), (10, 200, 30, 40)).save(path, format="JPEG")),
        ("gray.jpg", lambda path: Image.new("L", (6, 6), 77).save(path, format="JPEG")),
        ("la.png", lambda path: Image.new("LA", (6, 6), (90, 10)).save(path)),
        ("rgba.png", lambda path: Image.new("RGBA", (6, 6), (1, 2, 3, 0)).save(path)),
        ("palette.png", _palette_with_transparency),
    ],
)
def test_eight_bit_modes_give_blips_pixels_without_warnings(tmp_path: Path, name: str, write) -> None:
    path = tmp_path / name
    write(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            blip_pixels = np.asarray(image.convert("RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = np.asarray(load_image(path))
    assert np.array_equal(ours, blip_pixels)


def test_an_msvd_avi_clip_with_a_leading_dash_decodes(tmp_path: Path) -> None:
    """MSVD ships YouTube clips as ``<youtube id>_<start>_<end>.avi``; ids may start with '-'."""
    path = write_avi(tmp_path / "-4wsuPCjDBc_5_15.avi", 8)
    frames = load_video_frames(path, 4, "strided")
    means = [float(np.asarray(frame).mean()) for frame in frames]
    assert len(frames) == 4 and means == sorted(means) and means[-1] - means[0] > 100


def test_non_ascii_captions_are_read_as_utf8_whatever_the_locale(tmp_path: Path, toy_root: Path) -> None:
    data = copy_task_data(toy_root, "coco", tmp_path / "data")
    path = data / "coco/annotations/coco_karpathy_test.json"
    records = json.loads(path.read_text())
    records[0]["caption"][0] = "un café crème à Zürich — ☕"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    script = (
        "from pathlib import Path; from harness.registry import get_registry; "
        f"spec = get_registry().task('coco_retrieval'); d = spec.build().load(Path({str(data)!r}), "
        "'karpathy_test_5k', dict(spec.protocol)); print(ascii(d.samples[0].captions[0]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "caf\\xe9 cr\\xe8me \\xe0 z\\xfcrich" in done.stdout


# -- checks before computing ---------------------------------------------------------------------


def test_missing_java_stops_a_captioning_run_before_any_weights_load(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(run_args(toy_root, "coco_retrieval,nocaps,coco_captioning", tmp_path / "runs"))
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "`java` is not on PATH but nocaps, coco_captioning need it" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture
def no_weights_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    (tmp_path / "hf").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HARNESS_WEIGHTS_DIR", str(tmp_path / "pth"))
    monkeypatch.chdir(tmp_path)


def test_every_missing_checkpoint_is_named_at_once_with_its_download_command(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str], no_weights_anywhere: None
) -> None:
    args = run_args(toy_root, "coco_retrieval,visdial,vqav2,nlvr2", tmp_path / "runs")
    args[args.index("blip-tiny")] = "blip"
    code = main(args)
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "3 checkpoint(s)" in line
    assert line.count("`hf download Salesforce/blip-itm-base-coco`") == 1
    assert "`hf download Salesforce/blip-vqa-base`" in line
    assert f"model_base_nlvr.pth into $HARNESS_WEIGHTS_DIR (now {tmp_path / 'pth'})" in line


def test_the_printed_download_command_exists_in_the_pinned_hub_client() -> None:
    scripts = {entry.name: entry.value for entry in distribution("huggingface_hub").entry_points
               if entry.group == "console_scripts"}
    assert "hf" in scripts and "huggingface-cli" not in scripts
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "hf download" in readme and "huggingface-cli download" not in readme


def test_bad_data_stops_the_run_before_any_prediction(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy_task_data(toy_root, "vqav2", tmp_path / "data")
    records = keep_records(data / VQA_FILE, 6)
    broken = data / "vqav2/images" / records[-1]["image"]
    broken.write_bytes(broken.read_bytes()[:60])
    code = main(run_args(data, "vqav2", tmp_path / "runs", "--batch-size", "1"))
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "data check failed before any weights loaded" in line and str(broken.resolve()) in line
    assert finished_records(tmp_path / "runs") == []


def test_an_unwritable_output_is_refused_before_anything_runs(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(run_args(toy_root, "vqav2", blocker / "runs"))
    assert code == 2
    assert "is not writable" in one_error_line(capsys.readouterr().err)


def test_task_all_runs_what_the_model_can_and_names_what_it_skipped() -> None:
    said: list[str] = []
    model, tasks = Runner(RunConfig(model="clip-tiny", tasks="all", toy=True), report=said.append).plan()
    names = [task.name for task in tasks]
    # CLIP filters CapFilt's pairs by cosine (ImageTextEmbedder), so capfilt_filter is among them.
    assert names == ["coco_retrieval", "flickr30k_retrieval", "flickr30k_retrieval_zeroshot", "msrvtt_retrieval",
                     "capfilt_filter"]
    (line,) = said
    assert "runs 5 of 12 tasks" in line
    assert "nlvr2 (lacks PairVerifier)" in line and "coco_captioning (lacks Captioner)" in line
    with pytest.raises(CapabilityError, match="cannot run 'nlvr2': it lacks PairVerifier"):
        Runner(RunConfig(model="clip-tiny", tasks="coco_retrieval,nlvr2", toy=True)).plan()


# -- output a user can live with ------------------------------------------------------------------


def _context(tmp_path: Path, **settings) -> RunContext:
    (tmp_path / "run").mkdir(exist_ok=True)
    return RunContext(protocol={}, predictions=PredictionStore(tmp_path / "run"), **settings)


def test_logs_get_plain_progress_lines_naming_the_task_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path, label="[2/11] coco_captioning", progress_seconds=0.0)
    for _ in ctx.progress(range(4), total=4, desc="encode images"):
        for _ in ctx.progress(range(3), total=3, desc="caption"):
            pass
    assert list(ctx.progress(range(1), total=1, desc="encode images")) == [0]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"[2/11] coco_captioning: encode images {n}/4 ({25 * n} %)" for n in range(1, 5)
    ]


def test_plain_progress_keeps_a_steady_interval_and_quiet_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path, label="[1/1] vqav2", progress_seconds=3600.0)
    for _ in ctx.progress(range(50), total=50, desc="answer"):
        pass
    assert len(capsys.readouterr().out.splitlines()) == 1
    quiet = _context(tmp_path, label="[1/1] vqav2", progress_seconds=0.0, quiet=True)
    for _ in quiet.progress(range(50), total=50, desc="answer"):
        pass
    assert capsys.readouterr().out == ""


def test_quiet_silences_what_child_processes_print(capfd: pytest.CaptureFixture[str]) -> None:
    chatter = [sys.executable, "-c", "import sys; print('java says hi'); print('spice says hi', file=sys.stderr)"]
    with silenced_output():
        subprocess.run(chatter, check=True)
    assert capfd.readouterr() == ("", "")
    subprocess.run(chatter, check=True)
    assert capfd.readouterr() == ("java says hi\n", "spice says hi\n")


def test_small_models_run_on_one_cpu_thread_unless_the_user_chose() -> None:
    tiny = build_blip_tiny(ModelRequest(task="coco_retrieval", protocol={"image_size": 64}))
    small = parameter_count(tiny)
    assert 0 < small < SMALL_MODEL_PARAMETERS
    assert cpu_threads("cpu", small, environ={}) == 1
    assert cpu_threads("cpu", small, environ={"OMP_NUM_THREADS": "2"}) is None
    assert cpu_threads("cuda", small, environ={}) is None
    assert cpu_threads("cpu", parameter_count(torch.nn.Linear(5000, 5000)), environ={}) is None


def test_a_run_on_the_cpu_sets_the_thread_count_by_the_rule(
    tmp_path: Path, toy_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    data = copy_task_data(toy_root, "vqav2", tmp_path / "data")
    keep_records(data / VQA_FILE, 2)
    assert main(run_args(data, "vqav2", tmp_path / "runs")) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1



@pytest.mark.slow
def test_a_quiet_captioning_run_leaves_stderr_empty(
    tmp_path: Path, toy_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """pycocoevalcap's Java tokenizer prints its token counts while scoring and while computing
    the chance levels; --quiet hides both."""
    assert main(run_args(toy_root, "coco_captioning", tmp_path / "runs", "--limit", "3")) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert "coco_captioning [karpathy_test] blip-tiny: bleu1=" in out
