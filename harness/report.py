"""``harness report``: one self-contained HTML page to look at runs, task by task.

Per task and split: the comparison table (``harness.compare``), its figure
(``harness.comparison_plot``), and, per run, the samples a researcher wants to see, worst
first, then a few of the best, drawn from the run's ``predictions.jsonl`` and the data it was
evaluated on (each task builds its own examples, ``Task.examples``). Pictures are embedded as
small JPEG thumbnails and the figure as a PNG, both as ``data:`` URIs, and the page carries its
own style and no script: it opens offline, can be mailed, and makes no network request.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import harness
from harness.errors import ConfigError, DataError, HarnessError, OutputError
from harness.examples import Example, ExampleSection, Line, Thumb
from harness.records import RunRecord, find_all_records

THUMB_SIZE = 144
"""Longest side of a thumbnail, in pixels: enough to recognise a scene, small enough that a
report with a few hundred of them stays a few megabytes."""
THUMB_QUALITY = 75
WORST, BEST = 6, 3
Progress = Callable[[str], None]

if TYPE_CHECKING:
    from PIL import Image

    from harness.compare import ComparisonTable


@dataclass(frozen=True)
class RunExamples:
    """A run's example sections, or why it has none (data moved or changed since the run)."""

    record: RunRecord
    sections: tuple[ExampleSection, ...]
    note: str = ""


def run_examples(record: RunRecord, worst: int, best: int) -> RunExamples:
    """The run's examples, from its predictions and the data it recorded (root, split, protocol,
    ``--limit``); a note instead when that data is gone or is no longer what the run saw."""
    from harness.predictions import read_predictions
    from harness.registry import get_registry

    root = Path(record.data["data"].get("root") or "")
    if not root.is_dir():
        return RunExamples(record, (), f"no examples: the run's data directory {root} is not on this machine")
    # A report is still worth having when one run's examples cannot be made (its task's plugin is
    # not installed here, Java is missing for CIDEr): that run gets a note, the others their examples.
    try:
        task = get_registry().task(record.task).build()
        dataset = task.load(root, record.split, record.protocol, skip_bad=True)
        limit = (record.data.get("samples") or {}).get("limit")
        if limit is not None:
            dataset.samples = dataset.samples[:limit]
        if dataset.fingerprint != record.fingerprint:
            return RunExamples(record, (), f"no examples: the annotation files under {root} changed since the run "
                                           "(their fingerprint differs from the record's)")
        predictions, _ = read_predictions(record.run_dir)
        return RunExamples(record, tuple(task.examples(dataset, predictions, record.protocol, worst, best)))
    except HarnessError as error:
        return RunExamples(record, (), f"no examples: {error}")


class Thumbnails:
    """``data:`` URIs of small JPEG thumbnails, each file read once however often it is shown."""

    def __init__(self, size: int = THUMB_SIZE) -> None:
        self.size = size
        self._uris: dict[tuple[Path, bool], str] = {}

    def uri(self, thumb: Thumb) -> str | None:
        """The thumbnail, or None when the file cannot be decoded (the card then says so)."""
        key = (thumb.path, thumb.frames)
        if key not in self._uris:
            self._uris[key] = self._encode(thumb)
        return self._uris[key] or None

    def _encode(self, thumb: Thumb) -> str:
        from harness.media import load_image, load_video_frames

        try:
            if thumb.frames:
                image = _strip(load_video_frames(thumb.path, thumb.frames, "uniform"), self.size)
            else:
                image = load_image(thumb.path)
                image.thumbnail((self.size, self.size))
        except DataError:
            return ""
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _strip(frames: Sequence[Image.Image], size: int) -> Image.Image:
    """Frames side by side, each shrunk to fit ``size``: one picture that shows motion."""
    from PIL import Image

    for frame in frames:
        frame.thumbnail((size, size))
    strip = Image.new("RGB", (sum(f.width for f in frames) + 2 * (len(frames) - 1), max(f.height for f in frames)), "white")
    left = 0
    for frame in frames:
        strip.paste(frame, (left, 0))
        left += frame.width + 2
    return strip


def figure_uri(tables: Sequence[ComparisonTable]) -> str:
    """The comparison figure of ``tables`` as a PNG ``data:`` URI."""
    from harness.comparison_plot import plot_tables

    buffer = io.BytesIO()
    plot_tables(tables).savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def table_html(tables: Sequence[ComparisonTable]) -> str:
    """The comparison table as ``harness compare --format html`` renders it, without its page."""
    from harness.table_formats import render

    page = render(tables, "html")
    body = re.search(r"<body[^>]*>(.*)</body>", page, flags=re.DOTALL)
    inner = body.group(1) if body else page
    # The report gives the task its own heading; the table's is dropped.
    return re.sub(r"<h2>.*?</h2>", "", inner, count=1, flags=re.DOTALL)


_VERDICT_CLASS = {True: "right", False: "wrong", None: ""}


def _line_html(line: Line) -> str:
    verdicts = line.verdicts or (None,) * len(line.texts)
    if len(line.texts) == 1:
        items = f'<span class="{_VERDICT_CLASS[verdicts[0]]}">{html.escape(line.texts[0])}</span>'
    else:
        items = "<ul>" + "".join(
            f'<li class="{_VERDICT_CLASS[v]}">{html.escape(text)}</li>' for text, v in zip(line.texts, verdicts, strict=True)
        ) + "</ul>"
    return f"<dt>{html.escape(line.label)}</dt><dd>{items}</dd>"


def _thumb_html(thumb: Thumb, thumbnails: Thumbnails) -> str:
    uri = thumbnails.uri(thumb)
    name = html.escape(thumb.path.name)
    picture = (f'<img src="{uri}" alt="{name}" title="{name}">' if uri
               else f'<span class="missing">cannot read {name}</span>')
    label = html.escape(thumb.label + (" (video)" if thumb.frames else ""))
    strip = " strip" if thumb.frames > 1 else ""
    return f'<figure class="{_VERDICT_CLASS[thumb.verdict]}{strip}">{picture}<figcaption>{label}</figcaption></figure>'


def _card_html(example: Example, kind: str, thumbnails: Thumbnails) -> str:
    thumbs = "".join(_thumb_html(thumb, thumbnails) for thumb in example.thumbs)
    lines = "".join(_line_html(line) for line in example.lines)
    wide = " wide" if len(example.thumbs) > 2 else ""
    return (
        f'<article class="card {kind}{wide}"><header><span class="badge">{html.escape(example.summary)}</span>'
        f'<span class="sid">{html.escape(example.sample_id)}</span></header>'
        f'<div class="thumbs">{thumbs}</div><dl>{lines}</dl></article>'
    )


def _section_html(section: ExampleSection, thumbnails: Thumbnails) -> str:
    parts = [f"<h4>{html.escape(section.title)} <small>({section.total} in the run)</small></h4>"]
    for kind, examples in (("worst", section.worst), ("best", section.best)):
        if examples:
            parts.append(f'<p class="kind">{kind} {len(examples)}</p><div class="cards">'
                         + "".join(_card_html(e, kind, thumbnails) for e in examples) + "</div>")
    return "".join(parts)


def _run_html(run: RunExamples, thumbnails: Thumbnails) -> str:
    record = run.record
    toy = " (toy suite: numbers not comparable with published rows)" if record.data["data"].get("toy") else ""
    parts = [f'<h3>examples: {html.escape(record.label)}<small>{html.escape(toy)}</small></h3>',
             f'<p class="path">{html.escape(str(record.run_dir))}</p>']
    if run.note:
        parts.append(f'<p class="note">{html.escape(run.note)}</p>')
    elif not run.sections:
        parts.append('<p class="note">this task has no examples to show</p>')
    parts += [_section_html(section, thumbnails) for section in run.sections]
    return "".join(parts)


def _anchor(task: str, split: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", f"{task}-{split}".lower())


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d232b;background:#f4f5f7}
main{max-width:1320px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px} h2{font-size:19px;margin:0 0 8px;padding-top:8px}
h3{font-size:15px;margin:18px 0 2px} h3 small,h4 small{font-weight:normal;color:#66707c;margin-left:6px}
h4{font-size:14px;margin:12px 0 4px}
.meta,.path{color:#66707c;margin:0 0 8px;font-size:12px} nav a{margin-right:12px;color:#1f5fa8;text-decoration:none}
section.task{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px 18px 18px;margin:18px 0}
.overview .table{overflow-x:auto} .overview .figure{margin:8px 0}
.overview img{max-width:100%;border:1px solid #eceff2}
table{border-collapse:collapse;font-size:12px;margin:4px 0} th,td{padding:3px 7px;border-bottom:1px solid #e4e7eb;text-align:left;white-space:nowrap}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums} tr.run td{background:#eef5ff;font-weight:600}
p.note{color:#555f6b;font-size:12px;margin:4px 0}
.kind{margin:8px 0 4px;font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:#66707c}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.card{border:1px solid #dde1e6;border-radius:6px;padding:8px;background:#fff}
figure.strip img{width:auto;height:96px;max-height:none} .card.wide{grid-column:span 2} .card.wide figure img{width:88px}
.card.worst{border-top:3px solid #c8463b} .card.best{border-top:3px solid #2e8b57}
.card header{display:flex;justify-content:space-between;gap:8px;margin-bottom:6px}
.badge{font-weight:600} .sid{color:#8a939e;font-size:11px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.thumbs{display:flex;flex-wrap:wrap;gap:4px}
figure{margin:0;padding:2px;border:2px solid transparent;border-radius:4px;text-align:center}
figure img{display:block;width:112px;height:auto;max-height:144px;object-fit:contain}
figure.right{border-color:#2e8b57} figure.wrong{border-color:#e3a19b}
figcaption{font-size:11px;color:#555f6b}
dl{margin:6px 0 0;display:grid;grid-template-columns:max-content 1fr;gap:2px 8px;font-size:12px}
dt{color:#66707c} dd{margin:0} dd ul{margin:0;padding-left:16px}
.right{color:#1e7a46;font-weight:600} .wrong{color:#b3372c}
li.right::marker{content:"\\2713  "} li.wrong::marker{content:"\\2717  "}
.missing{display:inline-block;width:96px;font-size:11px;color:#b3372c}
"""


def render_report(tables: Sequence[ComparisonTable], runs: Sequence[RunExamples], *,
                  progress: Progress | None = None) -> str:
    """The whole page: a section per table (task, split) with its table, figure and the
    examples of each of its runs (``runs``, matched to tables by task and split)."""
    thumbnails = Thumbnails()
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{_anchor(t.task, t.split)}">{html.escape(t.task)}</a>' for t in tables)
    body = [
        "<h1>vl-harness report</h1>",
        f'<p class="meta">{len(runs)} run(s), {len(tables)} task(s); made {created} by harness {html.escape(harness.__version__)}. '
        f"Examples: the worst cases of each run first, then a few of the best; green marks the right answer or "
        f"candidate, red a wrong one.</p>",
        f"<nav>{nav}</nav>",
    ]
    for table in tables:
        if progress is not None:
            progress(f"report: {table.task} [{table.split}]")
        anchor = _anchor(table.task, table.split)
        body.append(
            f'<section class="task" id="{anchor}"><h2>{html.escape(table.task)} / {html.escape(table.split)}</h2>'
            f'<div class="overview"><div class="table">{table_html([table])}</div>'
            f'<div class="figure"><img src="{figure_uri([table])}" alt="figure: {html.escape(table.task)}"></div></div>'
        )
        body += [_run_html(run, thumbnails) for run in runs if (run.record.task, run.record.split) == (table.task, table.split)]
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">',
        f'<head><meta charset="utf-8"><title>vl-harness report</title><style>{_STYLE}</style></head>',
        f"<body><main>{''.join(body)}</main></body>", "</html>", "",
    ])


def run_report(args: argparse.Namespace) -> int:
    """The ``harness report`` command."""
    from harness.baselines import registered_baselines, select_baselines
    from harness.compare import build_tables
    from harness.config import split_names

    if args.output.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"-o {args.output}: the report is one HTML file; give a name ending in .html")
    if args.worst < 0 or args.best < 0:
        raise ConfigError("--worst and --best must be 0 or more")
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    records = find_all_records(args.run_dirs)
    names = None if args.baselines is None else split_names(args.baselines)
    tables = build_tables(records, select_baselines(registered_baselines(), names))
    runs = []
    for record in records:
        if progress is not None:
            progress(f"examples: {record.task} [{record.split}] {record.label}")
        runs.append(run_examples(record, args.worst, args.best))
    page = render_report(tables, runs, progress=progress)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{args.output}: cannot write the report ({exc.strerror})") from exc
    shown = sum(len(s.worst) + len(s.best) for run in runs for s in run.sections)
    print(f"report of {len(records)} run(s) over {len(tables)} task(s), {shown} examples, "
          f"{len(page) / 1e6:.1f} MB -> {args.output}")
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``harness report``; the parser's ``func`` returns the exit code."""
    parser = subparsers.add_parser(
        "report",
        help="one self-contained HTML page: tables, figures and the worst and best examples of runs",
        description=(
            "Write one HTML file that opens offline: per task, the comparison table and figure of "
            "`harness compare`, and each run's worst and best examples (images with their caption "
            "and references, questions with the human answers, retrieval queries with the top 5, "
            "NLVR2 pairs, dialog rounds), drawn from its predictions.jsonl and the data it recorded."
        ),
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="a run directory, its result.json, or a directory of run directories")
    parser.add_argument("--output", "-o", type=Path, default=Path("report.html"), metavar="FILE.html",
                        help="the HTML file to write (default: report.html)")
    parser.add_argument("--worst", type=int, default=WORST, help=f"worst examples per run and query kind (default {WORST})")
    parser.add_argument("--best", type=int, default=BEST, help=f"best examples per run and query kind (default {BEST})")
    parser.add_argument("--baselines", action="append", metavar="NAME",
                        help="baseline tables to show, as for `harness compare` (default: every registered table)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=run_report)
    return parser
