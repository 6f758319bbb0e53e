import numpy as np
import pytest
import torch
from media_files import frame_colour, write_image, write_mp4
from PIL import Image

from harness.errors import DataError
from harness.media import frame_indices, load_image, load_video_frames, pixel_batches


def _to_tensor(images):
    """Preprocess stand-in: resize to 8x8 and scale to [0, 1], as a model's preprocess would."""
    arrays = [np.asarray(image.resize((8, 8), Image.BICUBIC), dtype=np.float32) / 255 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


# -- images -----------------------------------------------------------------------------------


def test_load_image_decodes_rgb(tmp_path):
    path = write_image(tmp_path / "a.jpg", colour=(10, 200, 30))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (24, 24)
    assert np.abs(np.asarray(image, dtype=int)[12, 12] - (10, 200, 30)).max() < 8


def test_load_image_converts_grayscale_png_to_rgb(tmp_path):
    path = tmp_path / "g.png"
    Image.new("L", (5, 5), 77).save(path)
    assert load_image(path).getpixel((0, 0)) == (77, 77, 77)


def test_missing_image_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jpg: image file not found"):
        load_image(tmp_path / "nope.jpg")


def test_zero_byte_image_named(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(DataError, match=r"empty\.jpg: image file is empty"):
        load_image(path)


def test_truncated_jpeg_named(tmp_path):
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: cannot decode image"):
        load_image(path)


def test_garbage_bytes_named(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(DataError, match=r"junk\.jpg: cannot decode image"):
        load_image(path)


def test_png_with_jpg_extension_loads_by_content(tmp_path):
    path = write_image(tmp_path / "really_png.jpg", colour=(10, 200, 30), fmt="PNG")
    assert load_image(path).getpixel((3, 3)) == (10, 200, 30)


# -- frame sampling ---------------------------------------------------------------------------


def test_strided_frames_match_blips_arange():
    for total in (8, 9, 15, 23, 100, 101, 317):
        expected = np.arange(0, total, total / 8, dtype=int).tolist()
        assert frame_indices(total, 8, "strided") == expected


def test_uniform_frames_are_segment_centres():
    assert frame_indices(32, 4, "uniform") == [4, 12, 20, 28]
    assert frame_indices(16, 16, "uniform") == list(range(16))
    indices = frame_indices(101, 16, "uniform")
    assert len(set(indices)) == 16 and indices == sorted(indices) and indices[-1] < 101


def test_too_few_frames_and_bad_sampling():
    with pytest.raises(DataError, match="video has 5 frames, fewer than the 8 asked for"):
        frame_indices(5, 8, "strided")
    with pytest.raises(DataError, match="unknown frame sampling 'random'"):
        frame_indices(50, 8, "random")


# -- videos -----------------------------------------------------------------------------------


def test_load_video_frames_decodes_the_sampled_frames(tmp_path):
    path = write_mp4(tmp_path / "v.mp4", num_frames=20)
    frames = load_video_frames(path, 4, "strided")
    assert len(frames) == 4 and all(frame.mode == "RGB" and frame.size == (32, 32) for frame in frames)
    reds = [np.asarray(frame, dtype=int)[16, 16, 0] for frame in frames]
    expected = [frame_colour(index)[0] for index in frame_indices(20, 4, "strided")]  # 0, 5, 10, 15
    assert np.abs(np.array(reds) - np.array(expected)).max() <= 4


def test_load_video_frames_scaled_by_decord_as_blip_decodes(tmp_path):
    import decord

    path = write_mp4(tmp_path / "v.mp4", num_frames=20, size=48)
    frames = load_video_frames(path, 4, "strided", size=32)
    assert len(frames) == 4 and all(frame.mode == "RGB" and frame.size == (32, 32) for frame in frames)
    # exactly what BLIP's loader gets from VideoReader(path, width=S, height=S)
    reference = decord.VideoReader(str(path), width=32, height=32).get_batch(frame_indices(20, 4, "strided")).asnumpy()
    assert np.array_equal(np.stack([np.asarray(frame) for frame in frames]), reference)
    reds = [np.asarray(frame, dtype=int)[16, 16, 0] for frame in frames]
    expected = [frame_colour(index)[0] for index in frame_indices(20, 4, "strided")]
    assert np.abs(np.array(reds) - np.array(expected)).max() <= 4


def test_short_video_named(tmp_path):
    path = write_mp4(tmp_path / "short.mp4", num_frames=3)
    with pytest.raises(DataError, match=r"short\.mp4: video has 3 frames, fewer than the 8 asked for"):
        load_video_frames(path, 8, "strided")


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_mp4_named(tmp_path, faststart):
    path = write_mp4(tmp_path / "cut.mp4", num_frames=40, size=64, faststart=faststart)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(DataError, match=r"cut\.mp4: cannot (read video|decode frames)"):
        load_video_frames(path, 8, "strided")


def test_missing_and_empty_video_named(tmp_path):
    with pytest.raises(DataError, match=r"gone\.mp4: video file not found"):
        load_video_frames(tmp_path / "gone.mp4", 8, "strided")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(DataError, match=r"empty\.mp4: video file is empty"):
        load_video_frames(empty, 8, "strided")


# -- batched loading --------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_pixel_batches_keeps_order_and_sets_failures_aside(tmp_path, num_workers):
    paths = [write_image(tmp_path / f"{i}.jpg", colour=(20 * i, 0, 0)) for i in range(5)]
    paths.insert(2, tmp_path / "missing.jpg")
    batches = list(pixel_batches(paths, load_image, _to_tensor, batch_size=2, num_workers=num_workers))
    assert len(batches) == 3
    good = [item for items, _, _ in batches for item in items]
    assert good == [p for p in paths if p.name != "missing.jpg"]
    failures = [failure for _, _, failed in batches for failure in failed]
    assert [item for item, _ in failures] == [tmp_path / "missing.jpg"]
    assert "missing.jpg: image file not found" in str(failures[0][1])
    items, pixels, _ = batches[0]
    assert pixels.shape == (2, 3, 8, 8)
    # the second image of the first batch is red 20, the first red 0
    assert pixels[1, 0].mean().item() == pytest.approx(20 / 255, abs=0.03)
    assert pixels[0, 0].mean().item() == pytest.approx(0, abs=0.03)


def test_pixel_batches_all_bad_batch_has_no_pixels(tmp_path):
    batches = list(pixel_batches([tmp_path / "a.jpg"], load_image, _to_tensor, batch_size=4))
    assert batches[0][0] == [] and batches[0][1] is None and len(batches[0][2]) == 1


def test_pixel_batches_stacks_video_frames(tmp_path):
    paths = [write_mp4(tmp_path / f"v{i}.mp4", num_frames=12) for i in range(3)]
    paths.append(write_mp4(tmp_path / "short.mp4", num_frames=2))
    batches = list(
        pixel_batches(paths, lambda p: load_video_frames(p, 4, "uniform"), _to_tensor, batch_size=4, num_workers=1)
    )
    ((items, pixels, failed),) = batches
    assert items == paths[:3]
    assert pixels.shape == (3, 4, 3, 8, 8)
    assert [item for item, _ in failed] == [paths[3]] and "fewer than the 4" in str(failed[0][1])


def test_pixel_batches_empty_input():
    assert list(pixel_batches([], load_image, _to_tensor, batch_size=4)) == []
