"""``harness report``: each task's examples from real toy-suite data, and the page opened in a real
headless Chromium (rendered elements, pictures drawn, no network request)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_process import run_dirs, run_harness
from PIL import Image

from harness.errors import ExitCode
from harness.examples import RIGHT, WRONG, worst_and_best
from harness.registry import get_registry

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH (CI installs the Debian package `chromium` in .ci/run)"
)


def _load(task_name: str, toy_root: Path) -> tuple[Any, Any]:
    spec = get_registry().task(task_name)
    task = spec.build()
    return task, task.load(toy_root, spec.default_split, dict(spec.protocol))


def dataset_protocol(task_name: str) -> dict[str, Any]:
    return dict(get_registry().task(task_name).protocol)


def test_worst_and_best_keeps_dataset_order_on_ties() -> None:
    scores = {"a": 0.0, "b": 100.0, "c": 0.0, "d": 50.0, "e": 100.0}
    assert worst_and_best(scores, worst=2, best=2) == (["a", "c"], ["b", "e"])
    # Best never repeats a worst case, even when there are fewer samples than asked for.
    assert worst_and_best({"a": 1.0, "b": 2.0}, worst=2, best=3) == (["a", "b"], [])


def test_vqa_examples_show_the_wrong_answers_first_with_the_human_answers(toy_root: Path) -> None:
    task, dataset = _load("vqav2", toy_root)
    samples = dataset.samples[:6]
    # Right answers (the annotators' most common) for the first four, nonsense for the last two.
    predictions = {s.sample_id: max(set(s.answers), key=s.answers.count) for s in samples[:4]}
    predictions |= {s.sample_id: "zebra" for s in samples[4:]}
    (section,) = task.examples(dataset, predictions, dataset_protocol("vqav2"), worst=2, best=1)
    assert section.total == 6
    assert [e.sample_id for e in section.worst] == [samples[4].sample_id, samples[5].sample_id]
    worst = section.worst[0]
    assert worst.summary == "VQA accuracy 0" and worst.thumbs[0].path == samples[4].images[0]
    lines = {line.label: line for line in worst.lines}
    assert lines["question"].texts == (samples[4].question,)
    assert lines["answer"].texts == ("zebra",) and lines["answer"].verdicts == (WRONG,)
    # Ten human answers, shown once each with their count.
    counts = [int(text.rsplit("\u00d7", 1)[1]) for text in lines["human answers"].texts]
    assert sum(counts) == len(samples[4].answers) == 10
    best = section.best[0]
    assert best.sample_id in {s.sample_id for s in samples[:4]}
    assert RIGHT in {line.label: line for line in best.lines}["human answers"].verdicts



def test_caption_examples_order_images_by_their_cider(toy_root: Path) -> None:
    task, dataset = _load("coco_captioning", toy_root)
    dataset.samples = dataset.samples[:4]
    references = dataset.extra["references"]
    ids = [s.sample_id for s in dataset.samples]
    predictions = {sid: references[sid][0] for sid in ids[:3]} | {ids[3]: "zzz qqq xxx www"}
    (section,) = task.examples(dataset, predictions, dataset_protocol("coco_captioning"), worst=1, best=1)
    worst = section.worst[0]
    assert worst.sample_id == ids[3] and worst.summary == "CIDEr 0.0"
    lines = {line.label: line.texts for line in worst.lines}
    assert lines["generated"] == ("zzz qqq xxx www",) and lines["references"] == tuple(references[ids[3]])
    assert worst.thumbs[0].path == dataset.samples[3].images[0]
    assert float(section.best[0].summary.split()[1]) > 0


def test_nlvr2_examples_put_confident_mistakes_first(toy_root: Path) -> None:
    task, dataset = _load("nlvr2", toy_root)
    samples = dataset.samples[:4]
    confident_wrong = {"probability": 0.0 if samples[0].label else 1.0, "label": not samples[0].label}
    unsure_wrong = {"probability": 0.4 if samples[1].label else 0.6, "label": not samples[1].label}
    right = [{"probability": 1.0 if s.label else 0.0, "label": s.label} for s in samples[2:]]
    predictions = dict(zip([s.sample_id for s in samples], [confident_wrong, unsure_wrong, *right], strict=True))
    (section,) = task.examples(dataset, predictions, dataset_protocol("nlvr2"), worst=2, best=1)
    assert [e.sample_id for e in section.worst] == [samples[0].sample_id, samples[1].sample_id]
    example = section.worst[0]
    assert [t.path for t in example.thumbs] == list(samples[0].images)
    assert [t.label for t in example.thumbs] == ["left", "right"]
    lines = {line.label: line for line in example.lines}
    assert lines["statement"].texts == (samples[0].sentence,)
    assert lines["model says"].verdicts == (WRONG,)
    assert section.best[0].summary.startswith("right")


def test_capfilt_filter_examples_put_kept_noise_and_dropped_captions_first(toy_root: Path) -> None:
    task, dataset = _load("capfilt_filter", toy_root)
    clean = next(p for p in dataset.samples if p.label == 1)
    noisy = [p for p in dataset.samples if p.label == 0][:2]
    protocol = {**dataset_protocol("capfilt_filter"), "score": "itm", "threshold": 0.5}
    scores = {clean.sample_id: 0.1, noisy[0].sample_id: 0.95, noisy[1].sample_id: 0.02}
    predictions = {sid: {"score": v, "kept": v >= 0.5} for sid, v in scores.items()}
    (section,) = task.examples(dataset, predictions, protocol, worst=2, best=1)
    # A noisy text kept at 0.95 is further on the wrong side than a caption dropped at 0.1.
    assert [e.sample_id for e in section.worst] == [noisy[0].sample_id, clean.sample_id]
    assert [e.sample_id for e in section.best] == [noisy[1].sample_id]
    lines = {line.label: line for line in section.worst[0].lines}
    assert lines["text"].texts == (noisy[0].text,)
    assert lines["filter"].verdicts == (WRONG,) and lines["filter"].texts == ("kept",)
    assert section.worst[0].thumbs[0].path == noisy[0].images[0]
    assert {line.label: line for line in section.best[0].lines}["filter"].verdicts == (RIGHT,)


def test_retrieval_examples_show_the_top_five_and_where_the_right_one_landed(toy_root: Path) -> None:
    task, dataset = _load("coco_retrieval", toy_root)
    samples = dataset.samples[:8]
    dataset.samples = samples
    # Every caption retrieves images 7, 6, 5, ... (image 7 first): image 7's captions are right at
    # rank 1, image 0's land at rank 8, outside the top five.
    order = list(range(7, -1, -1))
    texts = [t for i, s in enumerate(samples) for t in [i] * len(s.captions)]
    predictions = {
        s.sample_id: {
            "i2t": {"rank": 1 if i == texts[0] else 5, "top": list(range(10))},
            "t2i": [{"rank": order.index(i) + 1, "top": order} for _ in s.captions],
        }
        for i, s in enumerate(samples)
    }
    to_image, to_text = task.examples(dataset, predictions, dataset_protocol("coco_retrieval"), worst=1, best=1)
    assert to_image.title == "text \u2192 image queries"
    assert to_image.total == sum(len(s.captions) for s in samples)
    worst = to_image.worst[0]
    assert worst.sample_id == f"{samples[0].sample_id} #1"
    assert worst.summary == "right image at rank 8 of 8"
    # The top five, all wrong, then the right image with its rank.
    assert [t.path for t in worst.thumbs] == [samples[i].images[0] for i in order[:5]] + [samples[0].images[0]]
    assert [t.verdict for t in worst.thumbs] == [WRONG] * 5 + [RIGHT]
    assert worst.thumbs[-1].label == "right one: #8"
    assert worst.lines[0].texts == (samples[0].captions[0],)
    best = to_image.best[0]
    assert best.summary == "right image at rank 1 of 8" and best.thumbs[0].verdict is RIGHT
    # Image queries: the top five texts, the image's own captions marked right.
    top_texts = to_text.best[0].lines[0]
    assert top_texts.texts == tuple([c for s in samples for c in s.captions][:5])
    assert top_texts.verdicts == tuple(RIGHT if texts[t] == 0 else WRONG for t in range(5))


def test_visdial_examples_rank_the_ground_truth_and_show_the_top_answers(toy_root: Path) -> None:
    task, dataset = _load("visdial", toy_root)
    rounds = dataset.samples[:3]
    predictions = {}
    for number, sample in enumerate(rounds):
        scores = [0.0] * 100
        scores[sample.gt_index] = [-1.0, 1.0, 0.5][number]  # ranked last, first, first
        if number == 2:
            scores[(sample.gt_index + 1) % 100] = 0.9  # one candidate above the ground truth
        predictions[sample.sample_id] = scores
    (section,) = task.examples(dataset, predictions, dataset_protocol("visdial"), worst=1, best=1)
    assert section.worst[0].summary == f"round {rounds[0].round_id}: ground truth ranked 100 of 100"
    best = section.best[0]
    assert best.sample_id == rounds[1].sample_id
    lines = {line.label: line for line in best.lines}
    assert lines["ground truth"].texts == (rounds[1].candidates[rounds[1].gt_index],)
    assert lines["model's top 3"].texts[0] == rounds[1].candidates[rounds[1].gt_index]
    assert lines["model's top 3"].verdicts[0] is RIGHT
    assert lines["question"].texts == (f"{rounds[1].context.question}?",)


class _Page(HTMLParser):
    """Counts what the report page is made of, from the DOM Chromium built."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        values = dict(attrs)
        for name in (values.get("class") or "").split():
            self.classes[f"{tag}.{name}"] = self.classes.get(f"{tag}.{name}", 0) + 1
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("src", "href"):
            if values.get(key) is not None:
                self.links.append(values[key])


def _chromium(page: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``page`` in headless Chromium with name resolution disabled, logging every network
    request it makes to ``out/net.json``."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={out / 'net.json'}",
        f"--user-data-dir={out / 'profile'}", *extra, page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def page_requests(net_log: Path) -> set[str]:
    """URLs the page asked for: requests a document initiated (Chromium's own background requests,
    update checks and the like, have no initiating origin and are left out)."""
    log = json.loads(net_log.read_text())
    types = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    return {
        event["params"]["url"]
        for event in log["events"]
        if types[event["type"]] == "URL_REQUEST_START_JOB"
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"
    }


@needs_chromium
def test_the_network_check_sees_a_page_that_fetches(tmp_path: Path) -> None:
    """The request check below can fail: a page with an external image and stylesheet is caught."""
    page = tmp_path / "fetches.html"
    page.write_text('<html><body><img src="http://example.invalid/a.png">'
                    '<link rel="stylesheet" href="https://example.invalid/b.css"></body></html>')
    done = _chromium(page, tmp_path, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert page_requests(tmp_path / "net.json") >= {"http://example.invalid/a.png", "https://example.invalid/b.css"}


@needs_chromium
@pytest.mark.slow
def test_report_of_toy_runs_renders_offline_in_chromium(tmp_path: Path, toy_cache: Path) -> None:
    output = tmp_path / "runs"
    done = run_harness(["run", "--model", "blip-tiny", "--task", "vqav2,nlvr2,msrvtt_qa", "--data", "toy",
                        "--limit", "5", "--device", "cpu", "--quiet", "--output", str(output)], toy_cache)
    assert done.returncode == ExitCode.OK, done.stderr
    report = tmp_path / "report.html"
    made = run_harness(["report", str(output), "-o", str(report), "--worst", "2", "--best", "1"], toy_cache)
    assert made.returncode == ExitCode.OK, made.stderr
    assert made.stdout.strip().endswith(f"-> {report}")
    assert "report of 3 run(s) over 3 task(s), 9 examples" in made.stdout
    assert "examples: vqav2 [val]" in made.stderr  # progress

    dom = _chromium(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert page_requests(tmp_path / "net.json") == set(), "the report must open without any network request"
    page = _Page()
    page.feed(dom.stdout)
    assert page.classes["section.task"] == 3 and page.tags["table"] == 3
    assert page.classes["article.card"] == 9
    assert page.classes.get("article.worst") == 6 and page.classes.get("article.best") == 3
    # Every picture is embedded: the three figures as PNG, the thumbnails as JPEG; every link is
    # an anchor inside the page.
    assert sum(src.startswith("data:image/png;base64,") for src in page.images) == 3
    assert all(src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for src in page.images)
    assert len(page.images) == 3 + 3 * 1 + 3 * 2 + 3 * 1  # figures, VQA, NLVR2 pairs, video strips
    assert all(link.startswith(("data:", "#")) for link in page.links)
    assert "span.missing" not in page.classes  # every thumbnail decoded

    shot = tmp_path / "report.png"
    drawn = _chromium(report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # The toy scenes' saturated shapes and the figures' bars: many strongly coloured pixels,
    # which a page of text alone (or broken images) would not have.
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 120).sum() > 5000
    assert len(run_dirs(output)) == 3


def test_examples_docstring_example_holds() -> None:
    import doctest

    import harness.examples

    result = doctest.testmod(harness.examples)
    assert result.failed == 0 and result.attempted > 0


def test_a_run_whose_data_is_gone_is_reported_without_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from result_fixtures import record_data, write_record

    from harness.cli import main

    gone = tmp_path / "moved-away"
    run_dir = write_record(tmp_path / "runs" / "a", data={**record_data()["data"], "root": str(gone)})
    report = tmp_path / "out" / "report.html"
    assert main(["report", str(run_dir), "-o", str(report), "--quiet"]) == ExitCode.OK
    assert capsys.readouterr().out.strip() == f"report of 1 run(s) over 1 task(s), 0 examples, " \
        f"{len(report.read_text(encoding='utf-8')) / 1e6:.1f} MB -> {report}"
    page = report.read_text(encoding="utf-8")
    assert f"no examples: the run&#x27;s data directory {gone} is not on this machine" in page
    assert "toy suite: numbers not comparable with published rows" in page


def test_report_must_be_an_html_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from result_fixtures import write_record

    from harness.cli import main

    run_dir = write_record(tmp_path / "run")
    assert main(["report", str(run_dir), "-o", str(tmp_path / "report.pdf")]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == (
        f"error: -o {tmp_path / 'report.pdf'}: the report is one HTML file; give a name ending in .html")


def test_changed_data_gives_a_note_instead_of_wrong_examples(tmp_path: Path, toy_root: Path) -> None:
    from result_fixtures import write_record

    from harness.records import load_record
    from harness.report import run_examples

    data = {"root": str(toy_root), "fingerprint": "0" * 64, "toy": True}
    record = load_record(write_record(tmp_path / "run", task="nlvr2", split="test_p", data=data,
                                      protocol=dataset_protocol("nlvr2")))
    result = run_examples(record, worst=2, best=1)
    assert result.sections == ()
    assert result.note == (f"no examples: the annotation files under {toy_root} changed since the run "
                           "(their fingerprint differs from the record's)")
