"""``harness capfilt``'s driver: shards in, captioned and filtered shards out, statistics last.

Each process takes the shards whose index modulo the world size is its rank (every shard done
exactly once), skips the ones already finished, and writes each of the others in one go. After a
barrier, process 0 computes ``capfilt.json`` and the histogram from the written shards. A shard's
captions are drawn from generators seeded by (seed, shard, round, captioner, batch), so they do
not depend on which process made them or on what ran before.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.capfilt.models import (
    FILTER_SCORES,
    Device,
    SyntheticCaptioner,
    TextFilter,
    build_captioner,
    build_filter,
    shard_seed,
)
from harness.capfilt.settings import (
    DEFAULT_COSINE_THRESHOLD,
    DEFAULT_PROBABILITY_THRESHOLD,
    CapFiltSettings,
    Threshold,
    json_ready,
    parse_captioner,
)
from harness.capfilt.shards import is_finished, read_manifests, read_sample_json, write_shard
from harness.capfilt.sources import BadSample, InputShard, WebSample, list_shards, read_shard
from harness.capfilt.stats import SYNTHETIC, WEB, capfilt_statistics
from harness.config import check_output_dir, default_batch_size, resolve_device, resolve_precision
from harness.errors import ConfigError, Interrupted, OutputError
from harness.registry import Registry, get_registry
from harness.results import versions, write_json_atomic

STATS_NAME = "capfilt.json"
SETTINGS_NAME = "capfilt_settings.json"
PLOT_NAME = "capfilt_scores.png"
Reporter = Callable[[str], None]


@dataclass(frozen=True)
class Roles:
    """The loaded models: captioners (ensemble, in flag order) and the filter."""

    captioners: Sequence[tuple[str, SyntheticCaptioner]]
    filter: TextFilter
    rounds: Sequence[tuple[int, ...] | None] = ()
    """The rounds each captioner captions in (None or absent: every round; ``--captioner MODEL@2``)."""

    def captions_in(self, index: int, round_number: int) -> bool:
        rounds = self.rounds[index] if index < len(self.rounds) else None
        return rounds is None or round_number in rounds


def resolve_filter_score(registry: Registry, name: str, score: str) -> str:
    """``auto``: the model's match probability when it has one, else the cosine (CLIP score)."""
    if score not in FILTER_SCORES:
        raise ConfigError(f"--filter-score {score!r}: expected one of {', '.join(FILTER_SCORES)}")
    if score != "auto":
        return score
    return "itm" if "ImageTextMatchProbability" in registry.model(name).capabilities else "cosine"


def finalise(settings: CapFiltSettings, registry: Registry) -> CapFiltSettings:
    """Settings with ``auto`` resolved, so the record says what ran; unknown model names fail
    here, before any input is read."""
    for spec in settings.captioners:
        registry.model(parse_captioner(spec)[0])
    score = resolve_filter_score(registry, settings.filter, settings.filter_score)
    default = DEFAULT_PROBABILITY_THRESHOLD if score == "itm" else DEFAULT_COSINE_THRESHOLD
    threshold = Threshold.parse(settings.threshold, default)
    return replace(settings, filter_score=score, threshold=threshold.describe())


def _check_saved_settings(output: Path, settings: CapFiltSettings) -> None:
    path = output / SETTINGS_NAME
    if not path.is_file():
        return
    differing = settings.differences(json.loads(path.read_text(encoding="utf-8")))
    if differing:
        raise OutputError(
            f"{output} holds a CapFilt run with other settings ({', '.join(differing)} differ); "
            "use another --output, or the same settings to resume it"
        )


def run_capfilt(settings: CapFiltSettings, device: str, output: Path, quiet: bool = False,
                report: Reporter | None = None, registry: Registry | None = None) -> dict[str, Any] | None:
    """Run CapFilt; returns process 0's statistics (None on the other processes)."""
    from harness.runner import _quiet_libraries, init_distributed, sigterm_as_interrupt

    report = report or (lambda line: print(line, flush=True))
    registry = (registry or get_registry()).collect()
    settings.check()
    settings = finalise(settings, registry)
    shards = list_shards(settings.input, settings.shard_size)
    device = resolve_device(device)
    precision = resolve_precision(settings.precision, device)
    settings = replace(settings, precision=precision, batch_size=settings.batch_size or default_batch_size(device),
                       device=device)
    dist, device = init_distributed(device)
    _check_saved_settings(output, settings)
    dist.barrier()
    if dist.is_main:
        check_output_dir(output)
        write_json_atomic(output / SETTINGS_NAME, settings.to_json())
    started = time.perf_counter()
    mine = [shard for index, shard in enumerate(shards) if index % dist.world_size == dist.rank]
    todo = [shard for shard in mine if not is_finished(output, shard.name)]
    if len(todo) < len(mine):
        report(f"capfilt: {len(mine) - len(todo)} of {len(mine)} shards already finished in {output}; resuming")
    roles = None
    _quiet_libraries()
    with sigterm_as_interrupt():
        try:
            if todo:
                roles = load_roles(registry, settings, Device(device, precision, settings.seed))
                threshold = Threshold.parse(settings.threshold, DEFAULT_PROBABILITY_THRESHOLD)
                for number, shard in enumerate(todo, start=1):
                    process_shard(shard, roles, settings, threshold, output, quiet or not dist.is_main,
                                  report, f"{number}/{len(todo)}")
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; finished shards are kept in {output}; run the same command again to resume") from None
    dist.barrier()
    if not dist.is_main:
        return None
    roles = roles or load_roles(registry, settings, Device(device, precision, settings.seed))
    stats = write_statistics(output, [s.name for s in shards], settings, roles_record(roles))
    report(summary_line(stats, output, time.perf_counter() - started))
    return stats


def load_roles(registry: Registry, settings: CapFiltSettings, device: Device) -> Roles:
    parsed = [parse_captioner(spec) for spec in settings.captioners]
    names = [name for name, _ in parsed]
    weights = list(settings.captioner_weights) + [None] * (len(names) - len(settings.captioner_weights))
    captioners = []
    for index, (name, weight) in enumerate(zip(names, weights, strict=True)):
        label = name if names.count(name) == 1 else f"{name}#{index + 1}"
        captioners.append((label, build_captioner(registry, name, weight, device, settings.sampling, settings.top_p)))
    text_filter = build_filter(registry, settings.filter, settings.filter_weights, device, settings.filter_score)
    return Roles(captioners, text_filter, [rounds for _, rounds in parsed])


def roles_record(roles: Roles) -> dict[str, Any]:
    """Models and weights hashes, from the loaded models themselves."""
    return {
        "captioners": [{"label": label, **captioner.record()} for label, captioner in roles.captioners],
        "filter": roles.filter.record(),
    }


def decode_image(sample: WebSample) -> Any:
    """The RGB image of a sample; raises ``BadSample``-worthy errors as ValueError."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(sample.image)) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image ({exc})") from exc


def process_shard(shard: InputShard, roles: Roles, settings: CapFiltSettings, threshold: Threshold, output: Path,
                  quiet: bool, report: Reporter, position: str) -> None:
    """Caption, score, threshold and write one shard."""
    started = time.perf_counter()
    image_root = Path(settings.image_root) if settings.image_root else None
    bad: list[dict[str, str]] = []
    good: list[tuple[WebSample, Any]] = []
    read = list(read_shard(shard, image_root, settings.limit))
    for sample in read:
        if isinstance(sample, BadSample):
            bad.append({"key": sample.key, "reason": sample.reason})
            continue
        try:
            good.append((sample, decode_image(sample)))
        except ValueError as exc:
            bad.append({"key": sample.key, "reason": str(exc)})
    scored = _score_batches(shard, good, roles, settings, quiet, report)
    cutoffs = {source: threshold.cutoff([t["score"] for texts in scored for t in texts if t["source"] == source])
               for source in (WEB, SYNTHETIC)}
    records = []
    for (sample, _), texts in zip(good, scored, strict=True):
        for text in texts:
            text["kept"] = text["score"] >= cutoffs[text["source"]]
        kept = [{k: v for k, v in t.items() if k != "kept"} for t in texts if t["kept"]]
        body = {"key": sample.key, "meta": sample.meta, "texts": kept, "scored": texts}
        records.append({"__key__": sample.key, sample.image_ext: sample.image, "json": body})
    manifest = {"shard": shard.name, "input": str(shard.path), "start": shard.start, "stop": shard.stop,
                "input_samples": len(read), "images": len(good), "bad_samples": bad}
    write_shard(output, shard.name, records, manifest)
    kept_texts = sum(len(r["json"]["texts"]) for r in records)
    total_texts = sum(len(texts) for texts in scored)
    report(f"shard {shard.name} ({position}): {len(good)} images, {len(bad)} bad, {kept_texts}/{total_texts} texts kept "
           f"({time.perf_counter() - started:.1f} s)")


def _score_batches(shard: InputShard, good: Sequence[tuple[WebSample, Any]], roles: Roles, settings: CapFiltSettings,
                   quiet: bool, report: Reporter) -> list[list[dict[str, Any]]]:
    """For each image: its web texts and synthetic captions, each with its source and filter score."""
    scored: list[list[dict[str, Any]]] = []
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(good), desc=f"shard {shard.name}", leave=False, dynamic_ncols=True)
    for start in range(0, len(good), settings.batch_size):
        batch = good[start : start + settings.batch_size]
        scored.extend(caption_and_score([image for _, image in batch], [sample.web_texts for sample, _ in batch],
                                        roles, settings, (shard.name, start)))
        if bar is not None:
            bar.update(len(batch))
        elif not quiet:
            report(f"shard {shard.name}: {len(scored)}/{len(good)} images")
    if bar is not None:
        bar.close()
    return scored


def caption_and_score(images: Sequence[Any], web_texts: Sequence[Sequence[str]], roles: Roles,
                      settings: CapFiltSettings, position: tuple[str, int]) -> list[list[dict[str, Any]]]:
    """One batch: every round's captions from every captioner, then one filter pass over the web
    texts and the captions of all images. ``position`` (shard, first sample) seeds the sampling."""
    texts = [[{"text": t, "source": WEB, "round": 0, "captioner": None} for t in own] for own in web_texts]
    for round_number in range(1, settings.rounds + 1):
        for index, (label, captioner) in enumerate(roles.captioners):
            if not roles.captions_in(index, round_number):
                continue
            seed = shard_seed(settings.seed, *position, round_number, index)
            for own, captions in zip(texts, captioner.captions(images, settings.captions_per_image, seed), strict=True):
                own.extend({"text": c, "source": SYNTHETIC, "round": round_number, "captioner": label} for c in captions)
    scores = roles.filter.scores(images, [[t["text"] for t in own] for own in texts])
    for own, values in zip(texts, scores, strict=True):
        for text, value in zip(own, values, strict=True):
            text["score"] = value
    return texts


def write_statistics(output: Path, names: Sequence[str], settings: CapFiltSettings,
                     roles: dict[str, Any]) -> dict[str, Any]:
    """``capfilt.json`` and the histogram PNG from the written shards."""
    from harness.capfilt.plot import plot_score_histograms

    manifests = read_manifests(output, names)
    stats = capfilt_statistics(read_sample_json(output, names), manifests, settings.filter_score)
    threshold = Threshold.parse(settings.threshold, DEFAULT_PROBABILITY_THRESHOLD)
    record = {
        "schema": "harness.capfilt/1",
        **stats,
        "threshold": {"setting": settings.threshold, "score": settings.filter_score,
                      "rule": "kept when score >= threshold" if threshold.value is not None
                      else "kept when among the top fraction of its source within its shard (ties kept)"},
        "settings": json_ready(settings.to_json()),
        "models": roles,
        "versions": versions(),
        "histogram_png": PLOT_NAME,
    }
    write_json_atomic(output / STATS_NAME, record)
    label = "match probability (ITM)" if settings.filter_score == "itm" else "cosine similarity (ITC)"
    plot_score_histograms(record, threshold.value, label, output / PLOT_NAME)
    return record


def summary_line(stats: dict[str, Any], output: Path, seconds: float) -> str:
    samples, sources = stats["samples"], stats["sources"]
    parts = [f"capfilt: {samples['images']} images ({samples['bad']} bad) in {stats['shards']} shards"]
    for source in (WEB, SYNTHETIC):
        if source in sources:
            entry = sources[source]
            parts.append(f"{source} kept {entry['kept']}/{entry['texts']}")
    if stats["noise_ratio"] is not None:
        parts.append(f"noise ratio {100 * stats['noise_ratio']:.1f} %")
    return f"{', '.join(parts)} ({seconds:.1f} s) -> {output / STATS_NAME}"

