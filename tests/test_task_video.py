import json
from pathlib import Path

import pytest
import torch
from capability_doubles import (
    ANSWERS,
    CircleModel,
    VideoAnswerModel,
    blip_score_matrices,
    caption_of,
    colour_of,
)
from media_files import write_avi, write_mp4

from harness.context import RunContext
from harness.errors import ConfigError, DataError
from harness.media import load_video_frames
from harness.metrics.retrieval import video_text_retrieval_metrics
from harness.predictions import PredictionStore
from harness_tasks.specs import TASK_SPECS
from harness_tasks.text import pre_caption

VIDEOS = 6
CAPTIONS = 2
FRAMES = 10


def spec(name):
    return next(s for s in TASK_SPECS if s.name == name)


def next_video_wins(videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    return 5.0 * (texts == (videos + 1) % VIDEOS).float()


def write_videos(folder: Path, frames: int = FRAMES) -> list[Path]:
    return [write_mp4(folder / f"video{7010 + i}.mp4", frames, size=32, colour=colour_of(i)) for i in range(VIDEOS)]


def run(task, dataset, model, run_dir, proto, *, skip_bad=False, batch_size=2):
    run_dir.mkdir(parents=True, exist_ok=True)
    store = PredictionStore(run_dir)
    ctx = RunContext(protocol=dict(proto), predictions=store, batch_size=batch_size, skip_bad=skip_bad)
    try:
        task.evaluate(model, dataset, ctx)
    finally:
        store.close()
    return ctx


# -- MSRVTT retrieval -----------------------------------------------------------------------------


@pytest.fixture
def msrvtt_root(tmp_path):
    root = tmp_path / "data"
    write_videos(root / "msrvtt" / "videos")
    lines = [
        {"clip_name": f"video{7010 + i}", "caption": caption_of(i, j)} for j in range(CAPTIONS) for i in range(VIDEOS)
    ]
    (root / "msrvtt" / "annotations").mkdir(parents=True)
    (root / "msrvtt" / "annotations" / "msrvtt_test.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def retrieval_protocol(**overrides):
    return {**spec("msrvtt_retrieval").protocol, "k_test": 4, **overrides}


def test_retrieval_groups_caption_lines_by_clip(msrvtt_root):
    dataset = spec("msrvtt_retrieval").build().load(msrvtt_root, "test_1k_a", retrieval_protocol())
    assert [s.sample_id for s in dataset.samples] == [f"video{7010 + i}" for i in range(VIDEOS)]
    assert dataset.samples[1].captions == ("item 1 view 0", "item 1 view 1")
    assert dataset.samples[1].video == (msrvtt_root / "msrvtt" / "videos" / "video7011.mp4").resolve()


def test_retrieval_protocol_follows_blip_video_loader():
    protocol = spec("msrvtt_retrieval").protocol
    assert (protocol["num_frames"], protocol["frame_sampling"], protocol["max_words"], protocol["k_test"]) == (8, "strided", 40, 128)


def test_retrieval_rerank_equals_brute_force(msrvtt_root, tmp_path):
    task = spec("msrvtt_retrieval").build()
    proto = retrieval_protocol()
    dataset = task.load(msrvtt_root, "test_1k_a", proto)
    model = CircleModel(itm=next_video_wins)
    ctx = run(task, dataset, model, tmp_path / "run", proto)
    assert ctx.protocol["rerank"] is True
    metrics = task.score(dataset, ctx.predictions.predictions, ctx.protocol)

    frames = torch.stack([model.preprocess(load_video_frames(s.video, 8, "strided")) for s in dataset.samples])
    visual = model.encode_videos(frames)
    assert visual.tokens.shape[1] == 2 * 8  # every frame's tokens, concatenated
    texts = model.encode_texts([caption for s in dataset.samples for caption in s.captions])
    v2t, t2v = blip_score_matrices(model, visual, texts, proto["k_test"])
    vid2txt = [[CAPTIONS * v + j for j in range(CAPTIONS)] for v in range(VIDEOS)]
    txt2vid = [t // CAPTIONS for t in range(VIDEOS * CAPTIONS)]
    expected = video_text_retrieval_metrics(t2v, txt2vid, vid2txt, v2t_scores=v2t)
    assert metrics == pytest.approx(expected)
    assert metrics["t2v_r1"] < 100  # the ITM rule overruled the perfect ITC order
    pairs = [pair for call in model.match_calls for pair in call]
    assert len(pairs) == len(set(pairs))


def test_retrieval_itc_only_is_perfect_and_levels_are_chance(msrvtt_root, tmp_path):
    task = spec("msrvtt_retrieval").build()
    proto = retrieval_protocol()
    dataset = task.load(msrvtt_root, "test_1k_a", proto)
    ctx = run(task, dataset, CircleModel(), tmp_path / "run", proto)
    assert ctx.protocol["rerank"] is False
    metrics = task.score(dataset, ctx.predictions.predictions, ctx.protocol)
    assert metrics["t2v_r1"] == metrics["v2t_r1"] == 100.0
    assert metrics["t2v_median_rank"] == metrics["v2t_mean_rank"] == 1.0
    levels = task.reference_levels(dataset, proto)
    assert levels["t2v_r1"] == pytest.approx(100 / VIDEOS)
    assert levels["t2v_median_rank"] == pytest.approx((VIDEOS + 1) / 2)
    assert set(levels) == set(metrics)
    per_sample = task.per_sample_metrics(dataset, ctx.predictions.predictions, ctx.protocol)
    assert per_sample["video7012"] == {f"{d}_r{k}": 100.0 for d in ("v2t", "t2v") for k in (1, 5, 10)}


def test_retrieval_short_and_truncated_videos(msrvtt_root, tmp_path):
    videos = msrvtt_root / "msrvtt" / "videos"
    write_mp4(videos / "video7012.mp4", 5, size=32, colour=colour_of(2))
    cut = videos / "video7014.mp4"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    task = spec("msrvtt_retrieval").build()
    proto = retrieval_protocol()
    dataset = task.load(msrvtt_root, "test_1k_a", proto)
    with pytest.raises(DataError, match=r"video7012\.mp4: video has 5 frames, fewer than the 8 asked for"):
        run(task, dataset, CircleModel(), tmp_path / "strict", proto)
    ctx = run(task, dataset, CircleModel(), tmp_path / "lenient", proto, skip_bad=True)
    assert set(ctx.predictions.skipped) == {"video7012", "video7014"}
    assert "cannot read video" in ctx.predictions.skipped["video7014"]
    assert len(ctx.predictions.predictions) == VIDEOS - 2
    problems = task.check(msrvtt_root, "test_1k_a", proto)
    assert len(problems) == 2 and any("video7012.mp4: video has 5 frames" in p for p in problems)


def test_retrieval_bad_line_is_named(msrvtt_root):
    path = msrvtt_root / "msrvtt" / "annotations" / "msrvtt_test.jsonl"
    path.write_text(path.read_text() + '{"clip_name": "video7010"}\n')
    with pytest.raises(DataError, match=r"msrvtt_test\.jsonl: record 12: field 'caption' missing"):
        spec("msrvtt_retrieval").build().load(msrvtt_root, "test_1k_a", retrieval_protocol())


# -- video QA -------------------------------------------------------------------------------------


def write_qa(root: Path, dataset: str, per_video: int = 2) -> Path:
    write_videos(root / dataset / "videos", frames=20)
    records = [
        {"question_id": per_video * i + q, "question": f"What is shown? ({q})", "answer": ANSWERS[i], "video": f"video{7010 + i}.mp4"}
        for i in range(VIDEOS)
        for q in range(per_video)
    ]
    annotations = root / dataset / "annotations"
    annotations.mkdir(parents=True)
    (annotations / f"{dataset}_qa_test.json").write_text(json.dumps(records))
    (annotations / f"{dataset}_qa_answer_list.json").write_text(json.dumps(list(ANSWERS)))
    return annotations / f"{dataset}_qa_test.json"


def qa_protocol(name, **overrides):
    return {**spec(name).protocol, "num_frames": 4, **overrides}


@pytest.mark.parametrize(("name", "folder"), [("msrvtt_qa", "msrvtt"), ("msvd_qa", "msvd")])
def test_qa_rank_mode_encodes_each_video_once(tmp_path, name, folder):
    write_qa(tmp_path / "data", folder)
    task = spec(name).build()
    proto = qa_protocol(name)
    dataset = task.load(tmp_path / "data", "test", proto)
    assert dataset.samples[0].question == "what is shown? 0"
    model = VideoAnswerModel()
    ctx = run(task, dataset, model, tmp_path / "run", proto)
    assert model.videos_encoded == VIDEOS
    assert all(k == len(ANSWERS) for _, k in model.rank_calls)  # k_test 128 capped at the list size
    assert task.score(dataset, ctx.predictions.predictions, proto) == {"accuracy": 100.0}
    assert ctx.predictions.predictions["3"] == "one"


def write_official_msvd_qa(root: Path) -> list[str]:
    """The official MSVD-QA release's layout: ``test_qa.json`` naming videos by integer id and
    ``youtube_mapping.txt`` mapping ``vidN`` to the clip's name (``.avi``, ids may start with '-')."""
    clips = [f"-clip{i}_5_15" for i in range(VIDEOS)]
    for clip in clips:
        write_avi(root / "msvd" / "videos" / f"{clip}.avi", 12)
    annotations = root / "msvd" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "youtube_mapping.txt").write_text("".join(f"{clip} vid{i + 1}\n" for i, clip in enumerate(clips)))
    records = [{"answer": ANSWERS[i], "id": 100 + i, "question": f"what is shown ({i})?", "video_id": i + 1}
               for i in range(VIDEOS)]
    (annotations / "test_qa.json").write_text(json.dumps(records))
    (annotations / "msvd_qa_answer_list.json").write_text(json.dumps(list(ANSWERS)))
    return clips


def test_official_msvd_qa_files_are_read_through_the_youtube_mapping(tmp_path):
    clips = write_official_msvd_qa(tmp_path / "data")
    task = spec("msvd_qa").build()
    proto = qa_protocol("msvd_qa")
    dataset = task.load(tmp_path / "data", "test", proto)
    assert [s.sample_id for s in dataset.samples] == [str(100 + i) for i in range(VIDEOS)]
    assert [s.video.name for s in dataset.samples] == [f"{clip}.avi" for clip in clips]
    assert dataset.samples[0].question == "what is shown 0?"  # pre_question keeps "?", as BLIP's does
    model = VideoAnswerModel()
    ctx = run(task, dataset, model, tmp_path / "run", proto)
    assert model.videos_encoded == VIDEOS
    assert set(ctx.predictions.predictions) == {s.sample_id for s in dataset.samples}


def test_official_msvd_qa_without_an_answer_list_runs_in_generate_mode_only(tmp_path):
    write_official_msvd_qa(tmp_path / "data")
    (tmp_path / "data" / "msvd" / "annotations" / "msvd_qa_answer_list.json").unlink()
    task = spec("msvd_qa").build()
    with pytest.raises(DataError, match="msvd_qa_answer_list.json"):
        task.load(tmp_path / "data", "test", qa_protocol("msvd_qa"))
    proto = qa_protocol("msvd_qa", mode="generate")
    dataset = task.load(tmp_path / "data", "test", proto)
    model = VideoAnswerModel()
    ctx = run(task, dataset, model, tmp_path / "run", proto)
    assert set(ctx.predictions.predictions) == {s.sample_id for s in dataset.samples}


def test_official_msvd_qa_with_an_unmapped_video_or_a_bad_mapping_line_is_named(tmp_path):
    write_official_msvd_qa(tmp_path / "data")
    annotations = tmp_path / "data" / "msvd" / "annotations"
    records = json.loads((annotations / "test_qa.json").read_text())
    records[1]["video_id"] = 99
    (annotations / "test_qa.json").write_text(json.dumps(records))
    task, proto = spec("msvd_qa").build(), qa_protocol("msvd_qa")
    with pytest.raises(DataError, match=r"test_qa.json: record 1: video_id 99 is not in youtube_mapping.txt"):
        task.load(tmp_path / "data", "test", proto)
    (annotations / "youtube_mapping.txt").write_text("-clip0_5_15 video1\n")
    with pytest.raises(DataError, match=r"youtube_mapping.txt: line 1: expected '<clip name> vid<N>'"):
        task.load(tmp_path / "data", "test", proto)


def test_qa_generate_mode_and_levels(tmp_path):
    write_qa(tmp_path / "data", "msrvtt", per_video=1)
    task = spec("msrvtt_qa").build()
    proto = qa_protocol("msrvtt_qa", mode="generate")
    dataset = task.load(tmp_path / "data", "test", proto)
    model = VideoAnswerModel()
    ctx = run(task, dataset, model, tmp_path / "run", proto)
    assert model.settings[0].num_beams == 3 and model.settings[0].max_length == 10 and model.settings[0].min_length == 1
    assert model.settings[0].length_normalization == "blip"
    with pytest.raises(ConfigError, match="length_normalization must be one of blip, generated"):
        task.load(tmp_path / "data", "test", {**proto, "length_normalization": "4.15"})
    with pytest.raises(ConfigError, match="frame_resize must be one of decord, pil"):
        task.load(tmp_path / "data", "test", {**proto, "frame_resize": "ffmpeg"})
    assert task.score(dataset, ctx.predictions.predictions, proto)["accuracy"] == 100.0
    assert task.reference_levels(dataset, proto) == {"accuracy": pytest.approx(100 / VIDEOS)}
    per_sample = task.per_sample_metrics(dataset, {"0": "ZERO ", "1": "two"}, proto)
    assert per_sample == {"0": {"accuracy": 100.0}, "1": {"accuracy": 0.0}}


def test_qa_bad_video_names_file_or_skips_its_questions(tmp_path):
    write_qa(tmp_path / "data", "msrvtt")
    write_mp4(tmp_path / "data" / "msrvtt" / "videos" / "video7013.mp4", 3, size=32, colour=colour_of(3))
    task = spec("msrvtt_qa").build()
    proto = qa_protocol("msrvtt_qa")
    dataset = task.load(tmp_path / "data", "test", proto)
    with pytest.raises(DataError, match=r"video7013\.mp4: video has 3 frames, fewer than the 4 asked for"):
        run(task, dataset, VideoAnswerModel(), tmp_path / "strict", proto)
    ctx = run(task, dataset, VideoAnswerModel(), tmp_path / "lenient", proto, skip_bad=True)
    assert set(ctx.predictions.skipped) == {"6", "7"}
    assert "needed by question 6" in ctx.predictions.skipped["6"]
    assert task.score(dataset, ctx.predictions.predictions, proto) == {"accuracy": 100.0}
    problems = task.check(tmp_path / "data", "test", proto)
    assert len(problems) == 1 and "needed by sample 6, 7" in problems[0]


def test_qa_resume_answers_only_pending_questions(tmp_path):
    write_qa(tmp_path / "data", "msrvtt")
    task = spec("msrvtt_qa").build()
    proto = qa_protocol("msrvtt_qa")
    dataset = task.load(tmp_path / "data", "test", proto)
    run(task, dataset, VideoAnswerModel(), tmp_path / "run", proto)
    again = VideoAnswerModel()
    run(task, dataset, again, tmp_path / "run", proto)
    assert again.videos_encoded == 0 and again.rank_calls == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("answer", 3, r"field 'answer' has type int \(expected str\)"),
        ("video", "../../x.mp4", "escapes the media folder"),
        ("question", None, r"field 'question' has type null"),
    ],
)
def test_qa_bad_record_is_named(tmp_path, field, value, message):
    path = write_qa(tmp_path / "data", "msrvtt")
    records = json.loads(path.read_text())
    records[4][field] = value
    path.write_text(json.dumps(records))
    task = spec("msrvtt_qa").build()
    with pytest.raises(DataError, match=rf"msrvtt_qa_test\.json: record 4: .*{message}"):
        task.load(tmp_path / "data", "test", qa_protocol("msrvtt_qa"))
    assert len(task.load(tmp_path / "data", "test", qa_protocol("msrvtt_qa"), skip_bad=True).skipped) == 1


def test_caption_preprocessing_is_blips():
    assert pre_caption("A man (in red) is: cooking!", 40) == "a man in red is cooking"


# -- blip-tiny on the toy suite -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "samples", "metric"),
    [("msrvtt_retrieval", 20, "t2v_r1"), ("msrvtt_qa", 60, "accuracy"), ("msvd_qa", 60, "accuracy")],
)
def test_blip_tiny_on_the_toy_suite(tmp_path, name, samples, metric):
    from harness.specs import ModelRequest
    from harness.toy.suite import BUILDERS
    from harness_plugins.blip.plugin import MODEL_SPECS

    task_spec = spec(name)
    split = task_spec.default_split
    BUILDERS[task_spec.data_dir](tmp_path / "data" / task_spec.data_dir, 0)
    tiny = next(m for m in MODEL_SPECS if m.name == "blip-tiny")
    proto = {**task_spec.protocol, **tiny.protocol_overrides}
    task = task_spec.build()
    assert task.check(tmp_path / "data", split, proto) == []
    dataset = task.load(tmp_path / "data", split, proto)
    runs = []
    for attempt in range(2):
        model = tiny.build(ModelRequest(task=name, protocol=proto, seed=0))
        ctx = run(task, dataset, model, tmp_path / f"run{attempt}", proto, batch_size=8)
        runs.append(ctx.predictions.predictions)
    assert len(runs[0]) == len(dataset.samples) == samples
    assert runs[0] == runs[1], "same seed, same predictions"
    metrics = task.score(dataset, runs[0], ctx.protocol)
    assert set(metrics) == set(task.reference_levels(dataset, ctx.protocol))
    assert 0.0 <= metrics[metric] <= 100.0
