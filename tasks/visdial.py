"""VisDial v1.0 (val), discriminative: rank the 100 candidate answers of every dialog round.

Every round of every dialog is a sample (``"<image_id>_<round>"``, rounds counted from 1 as the
dense annotations count them). The model sees the image, the caption, the previous rounds'
question-answer pairs (the most recent ``history_rounds`` of them) and the question, all as
released (VisDial's questions carry no question mark), and scores each candidate. Predictions
are the candidates' scores, so MRR, R@1/5/10 and mean rank of the ground truth, and NDCG over
the rounds with dense relevance annotations (one per val dialog), are computed from them
exactly, ties included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.annotations import fingerprint, read_json, require_fields
from harness.capabilities import DialogContext
from harness.errors import ConfigError, DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.metrics import ranks_from_scores, visdial_metrics
from harness.task import Dataset
from harness_tasks.images import Gather, ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records, split_entry

if TYPE_CHECKING:
    from harness.context import RunContext

NUM_OPTIONS = 100
"""VisDial v1.0 gives every round 100 candidate answers."""
TOP_SHOWN = 3
"""Best-scored candidates a report shows of a round."""
HISTORY_SHOWN = 3
"""Most recent question-answer pairs a report shows before a round's question."""


@dataclass(frozen=True)
class VisDialFiles:
    dialogs: str
    dense: str
    image_name: str
    """File name of a dialog's image under ``images/``, from its ``image_id``."""


SPLITS = {
    "v1.0_val": VisDialFiles(
        dialogs="visdial_1.0_val.json",
        dense="visdial_1.0_val_dense_annotations.json",
        image_name="VisualDialog_val2018_{:012d}.jpg",
    ),
}


@dataclass(frozen=True)
class VisDialRound:
    sample_id: str
    image_id: int
    round_id: int
    images: tuple[Path]
    context: DialogContext
    candidates: tuple[str, ...]
    gt_index: int


def history_rounds(protocol: Mapping[str, Any]) -> int:
    value = protocol.get("history_rounds", 10)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"history_rounds must be a non-negative integer, got {value!r}")
    return value


def float32_scores(row: Any) -> list[float]:
    """Scores as the shortest decimals that read back as the same float32 values: compact in the
    prediction file, yet every comparison (and so every rank and tie) is exactly the model's."""
    return [float(str(value)) for value in np.asarray(row, dtype=np.float32)]


def random_ranking_levels(num_options: int, relevance: Sequence[Sequence[float]]) -> dict[str, float]:
    """Expected metrics of ranking the candidates in uniformly random order (exact, not sampled).

    The ground truth's rank is uniform on 1..C: MRR = H_C / C, R@k = k / C, mean rank (C + 1) / 2.
    Each candidate is equally likely at every position, so a round's expected DCG@k is its mean
    relevance times the sum of the first k discounts; divided by the round's ideal DCG@k.
    """
    levels = {
        "mrr": 100.0 * sum(1.0 / rank for rank in range(1, num_options + 1)) / num_options,
        **{f"r{k}": 100.0 * min(k, num_options) / num_options for k in (1, 5, 10)},
        "mean_rank": (num_options + 1) / 2,
    }
    if len(relevance):
        gains = np.asarray(relevance, dtype=np.float64)
        discounts = 1.0 / np.log2(np.arange(2, gains.shape[1] + 2))
        k = (gains != 0).sum(axis=1)
        in_top_k = np.arange(gains.shape[1])[None, :] < k[:, None]
        ideal = (-np.sort(-gains, axis=1) * discounts * in_top_k).sum(axis=1)
        expected = gains.mean(axis=1) * (discounts * in_top_k).sum(axis=1)
        levels["ndcg"] = 100.0 * float(np.mean(expected / ideal))
    return levels


class VisDialTask(ImageTask):
    """VisDial v1.0 val with a ``DialogAnswerRanker``; predictions are the 100 candidate scores."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        files = split_entry(self.name, split, SPLITS)
        root = data_root / self.spec.data_dir
        path = root / "annotations" / files.dialogs
        dense_path = root / "annotations" / files.dense
        keep = history_rounds(protocol)
        data = read_json(path)
        content = data.get("data") if isinstance(data, dict) else None
        if not isinstance(content, dict) or not all(isinstance(content.get(k), list) for k in ("questions", "answers", "dialogs")):
            raise DataError(f"{path}: expected VisDial's format, an object whose 'data' has 'questions', 'answers' and 'dialogs' lists")
        questions, answers = content["questions"], content["answers"]
        media = MediaPaths(root / "images")

        def text(table: list, index: int, what: str, where: str) -> str:
            if not 0 <= index < len(table) or not isinstance(table[index], str):
                raise DataError(f"{where}: {what} index {index} is not a string of data.{what}s ({len(table)} entries)")
            return table[index]

        def parse(dialog: Any, index: int) -> list[VisDialRound]:
            require_fields(dialog, {"image_id": int, "caption": str, "dialog": list}, path, index)
            image_id = dialog["image_id"]
            image = media(files.image_name.format(image_id), path, index)
            rounds_label = Path(f"{path} dialog {index} (image {image_id}) rounds")
            history: list[tuple[str, str]] = []
            rounds = []
            for number, turn in enumerate(dialog["dialog"], start=1):
                require_fields(turn, {"question": int, "answer": int, "answer_options": list[int], "gt_index": int}, rounds_label, number - 1)
                where = f"{path}: dialog {index} (image {image_id}) round {number}"
                options = turn["answer_options"]
                if len(options) != NUM_OPTIONS:
                    raise DataError(f"{where}: {len(options)} answer_options (expected {NUM_OPTIONS})")
                if not 0 <= turn["gt_index"] < NUM_OPTIONS or options[turn["gt_index"]] != turn["answer"]:
                    raise DataError(f"{where}: gt_index {turn['gt_index']} does not point at the round's answer among answer_options")
                question = text(questions, turn["question"], "question", where)
                rounds.append(
                    VisDialRound(
                        sample_id=f"{image_id}_{number}",
                        image_id=image_id,
                        round_id=number,
                        images=(image,),
                        context=DialogContext(
                            caption=dialog["caption"],
                            history=tuple(history[-keep:]) if keep else (),
                            question=question,
                        ),
                        candidates=tuple(text(answers, option, "answer", where) for option in options),
                        gt_index=turn["gt_index"],
                    )
                )
                history.append((question, text(answers, turn["answer"], "answer", where)))
            if not rounds:
                raise DataError(f"{path}: record {index}: dialog of image {image_id} has no rounds")
            return rounds

        dialogs, skipped = collect_records(
            content["dialogs"], path, parse, lambda rounds: str(rounds[0].image_id), skip_bad=skip_bad
        )
        samples = [round_ for rounds in dialogs for round_ in rounds]
        relevance = self._read_dense(dense_path, {s.sample_id for s in samples}, {s.image_id for s in samples}, skip_bad)
        return Dataset(
            task=self.name, split=split, root=root, samples=samples,
            fingerprint=fingerprint([path, dense_path]), skipped=skipped, extra={"relevance": relevance},
        )

    @staticmethod
    def _read_dense(path: Path, sample_ids: set[str], image_ids: set[int], skip_bad: bool) -> dict[str, list[float]]:
        """Dense relevance by sample id. A malformed entry is fatal even under ``--skip-bad``: it
        would change NDCG for every model without a trace. Entries of dialogs skipped as bad are
        ignored under ``--skip-bad``."""
        entries = read_json(path)
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected a JSON list of {{image_id, round_id, gt_relevance}} entries")
        relevance: dict[str, list[float]] = {}
        for index, entry in enumerate(entries):
            require_fields(entry, {"image_id": int, "round_id": int, "gt_relevance": list[float]}, path, index)
            sample_id = f"{entry['image_id']}_{entry['round_id']}"
            gains = entry["gt_relevance"]
            if sample_id not in sample_ids:
                if skip_bad and entry["image_id"] not in image_ids:
                    continue
                raise DataError(f"{path}: record {index}: no dialog round {sample_id} (image {entry['image_id']}, round {entry['round_id']}) in the dialog file")
            if sample_id in relevance:
                raise DataError(f"{path}: record {index}: a second dense annotation for round {sample_id}")
            if len(gains) != NUM_OPTIONS or any(g < 0 for g in gains) or not any(gains):
                raise DataError(f"{path}: record {index}: gt_relevance must hold {NUM_OPTIONS} non-negative values, not all zero")
            relevance[sample_id] = [float(g) for g in gains]
        return relevance

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        def score_answers(gather: Gather, chunk: list[VisDialRound]) -> list[list[float]]:
            with ctx.stage("score_answers", items=len(chunk)):
                (visual,) = gather(chunk)
                scores = model.score_dialog_answers(visual, [s.context for s in chunk], [s.candidates for s in chunk])
            scores = scores.detach().float().cpu().numpy()
            if scores.shape != (len(chunk), NUM_OPTIONS):
                raise ValueError(f"score_dialog_answers returned shape {scores.shape}, expected ({len(chunk)}, {NUM_OPTIONS})")
            return [float32_scores(row) for row in scores]

        for ready, gather in encoded_samples(model, ctx.pending(dataset), ctx):
            for chunk, rows in ctx.map_batches(ready, partial(score_answers, gather), desc="rank answers"):
                ctx.predictions.add_many((s.sample_id, row) for s, row in zip(chunk, rows, strict=True))

    def _ranked(self, dataset: Dataset, predictions: Mapping[str, Any]) -> tuple[list[VisDialRound], np.ndarray]:
        rounds = [s for s in dataset.samples if s.sample_id in predictions]
        scores = np.asarray([predictions[s.sample_id] for s in rounds], dtype=np.float64).reshape(len(rounds), -1)
        return rounds, scores

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """``mrr``, ``r1``, ``r5``, ``r10`` (percent), ``mean_rank``, and ``ndcg`` (percent) over
        the evaluated rounds that have dense annotations."""
        rounds, scores = self._ranked(dataset, predictions)
        if not rounds:
            return {}
        dense = dataset.extra["relevance"]
        rows = [i for i, s in enumerate(rounds) if s.sample_id in dense]
        return visdial_metrics(
            scores,
            [s.gt_index for s in rounds],
            np.asarray([dense[rounds[i].sample_id] for i in rows]) if rows else None,
            rows or None,
        )

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """Expected metrics of a random ranking of the 100 candidates (``random_ranking_levels``);
        NDCG's over this split's dense annotations."""
        dense = dataset.extra["relevance"]
        return random_ranking_levels(NUM_OPTIONS, [dense[s.sample_id] for s in dataset.samples if s.sample_id in dense])

    def per_sample_metrics(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """Each round's MRR, R@k and rank; NDCG only for rounds with dense annotations (the mean
        over those rounds is ``ndcg``)."""
        rounds, scores = self._ranked(dataset, predictions)
        dense = dataset.extra["relevance"]
        return {
            s.sample_id: visdial_metrics(
                scores[i : i + 1],
                [s.gt_index],
                np.asarray([dense[s.sample_id]]) if s.sample_id in dense else None,
            )
            for i, s in enumerate(rounds)
        }

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Rounds by the rank of the ground-truth answer (ties against it, as the metrics count):
        the image, caption, recent history, question, ground truth and the model's top answers."""
        rounds, scores = self._ranked(dataset, predictions)
        if not rounds:
            return []
        ranks = ranks_from_scores(scores, [s.gt_index for s in rounds])
        row = {s.sample_id: i for i, s in enumerate(rounds)}

        def example(sample_id: str) -> Example:
            sample = rounds[row[sample_id]]
            top = np.argsort(-scores[row[sample_id]], kind="stable")[:TOP_SHOWN]
            history = tuple(f"{q}? {a}" for q, a in sample.context.history[-HISTORY_SHOWN:])
            lines = [Line("caption", (sample.context.caption,))]
            if history:
                lines.append(Line("earlier rounds", history))
            lines += [
                Line("question", (f"{sample.context.question}?",)),
                Line("ground truth", (sample.candidates[sample.gt_index],), (RIGHT,)),
                Line(f"model's top {TOP_SHOWN}", tuple(sample.candidates[i] for i in top),
                     tuple(RIGHT if i == sample.gt_index else WRONG for i in top)),
            ]
            return Example(
                sample_id=sample_id,
                summary=f"round {sample.round_id}: ground truth ranked {ranks[row[sample_id]]} of {scores.shape[1]}",
                thumbs=(Thumb(sample.images[0]),),
                lines=tuple(lines),
            )

        return [section("dialog rounds", {s.sample_id: -float(ranks[i]) for i, s in enumerate(rounds)}, example, worst, best)]
