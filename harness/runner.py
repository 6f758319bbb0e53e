"""Drives one model over one or more tasks: checks, data, model, checkpointed evaluation, metrics,
and an atomically written result record per task.

Under ``torchrun`` every process runs the same command: samples are split by a hash of their id,
predictions from all processes land in the same run directory, and process 0 scores them, so the
metrics equal a single-process run and a run can resume with a different number of processes.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cache import FeatureCache, open_feature_cache
from harness.caveats import interpretation_fields
from harness.config import (
    RunConfig,
    check_output_dir,
    check_run_options,
    default_batch_size,
    merge_protocol,
    resolve_device,
    resolve_precision,
)
from harness.context import RunContext, StageTiming
from harness.cpu_threads import apply_cpu_threads
from harness.errors import CapabilityError, ConfigError, DataError, Interrupted, OutputError
from harness.predictions import MERGED_NAME, PART_GLOB, PredictionStore
from harness.preflight import PlannedTask, check_before_computing
from harness.protocol_rules import validate_protocol
from harness.quiet import silenced_output
from harness.registry import Registry, check_instance, get_registry
from harness.results import (
    PER_SAMPLE_NAME,
    RESULT_NAME,
    SCHEMA,
    now_iso,
    read_record,
    remove_leftovers,
    versions,
    weights_identity,
    write_json_atomic,
    write_jsonl_atomic,
)
from harness.run_data import check_same_data
from harness.specs import ModelRequest, ModelSpec, TaskSpec

RUN_CONFIG_NAME = "run.json"
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES}
Reporter = Callable[[str], None]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Process 0's value on every process (the run directory must be the same everywhere)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's value, in rank order, on every process."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def init_distributed(device: str) -> tuple[Distributed, str]:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPU); one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), device
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    return Distributed(dist.get_rank(), dist.get_world_size()), device


def resolve_data_root(config: RunConfig) -> Path:
    if config.toy:
        from harness.toy import ensure_toy_suite

        return ensure_toy_suite(seed=0)
    if not config.data_root:
        raise ConfigError("no data: pass --data-root DIR (layout in docs/datasets.md) or --data toy")
    root = Path(config.data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"--data-root {root}: no such directory")
    return root


def _run_key(config: RunConfig, task: TaskSpec, split: str, protocol: Mapping[str, Any],
             fingerprint: str, precision: str) -> str:
    """What makes two runs the same run: same command on the same data gives the same directory,
    so starting the command again resumes it."""
    key = {
        "model": config.model, "weights": config.weights, "task": task.name, "split": split,
        "protocol": protocol, "data": fingerprint, "limit": config.limit, "seed": config.seed,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def discard_finished(run_dir: Path) -> None:
    """Delete a run's record and predictions so ``--force`` recomputes it in the same directory.

    The record goes first: if the forced run is stopped, the directory holds an unfinished run,
    which the same command resumes, never the old record beside half of the new predictions."""
    (run_dir / RESULT_NAME).unlink(missing_ok=True)
    for name in (MERGED_NAME, PER_SAMPLE_NAME):
        (run_dir / name).unlink(missing_ok=True)
    for part in run_dir.glob(PART_GLOB):
        part.unlink()


class RunLock:
    """An exclusive lock on a run directory, so two runs never write into the same one."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.handle = self.path.open("w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.handle.close()
            raise OutputError(f"{run_dir} is being written by another harness run; wait for it or use another --output") from exc

    def release(self) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a pre-empted job) takes the same clean path as Ctrl-C."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print(message: str) -> None:
    print(message, flush=True)


def _summary_line(record: Mapping[str, Any], run_dir: Path) -> str:
    metrics = ", ".join(f"{k}={v:.2f}" for k, v in record["metrics"].items() if isinstance(v, (int, float)))
    samples = record["samples"]
    skipped = f", {samples['skipped']} skipped" if samples["skipped"] else ""
    line = (
        f"{record['task']} [{record['split']}] {record['model']}: {metrics or 'no metrics (no ground truth)'} "
        f"({samples['evaluated']} samples{skipped}, {record['timings']['total_seconds']:.1f} s) -> {run_dir}"
    )
    return "\n".join([line, *(f"  caveat: {caveat}" for caveat in record.get("caveats") or [])])


class Runner:
    def __init__(self, config: RunConfig, registry: Registry | None = None, report: Reporter = _print,
                 force: bool = False) -> None:
        self.config = config
        self.force = force
        """Recompute tasks whose run directory already holds a finished record (``--force``)."""
        self.registry = (registry or get_registry()).collect()
        self.report = report
        self.finished_dirs: list[Path] = []
        """Run directory of each record ``run`` returned, in the same order (process 0 only)."""
        self.task_label = ""
        """``[2/11] coco_captioning``: which task of the run is running, for progress lines."""
        self.feature_cache: FeatureCache | None = None

    def plan(self) -> tuple[ModelSpec, list[TaskSpec]]:
        """Every check that needs no data or weights, done before anything heavy is loaded."""
        model = self.registry.model(self.config.model)
        tasks = self.registry.resolve_tasks(self.config.tasks)
        if self.config.tasks.strip() == "all":
            tasks = self._tasks_the_model_can_run(model, tasks)
        for task in tasks:
            self.registry.check_fit(model, task)
        for key in self.config.overrides:
            if not any(key in task.protocol for task in tasks):
                merge_protocol(tasks[0].name, tasks[0].protocol, {}, {key: self.config.overrides[key]})
        for task in tasks:
            protocol = merge_protocol(task.name, task.protocol, model.protocol_overrides, self.config.overrides, strict=False)
            validate_protocol(task.name, protocol, task.rules)
        check_run_options(self.config)
        if self.config.split is not None:
            if not any(self.config.split in task.splits for task in tasks):
                known = sorted({s for t in tasks for s in t.splits})
                raise ConfigError(f"--split {self.config.split!r} is not a split of {self.config.tasks!r} (splits: {', '.join(known)})")
        return model, tasks

    def _tasks_the_model_can_run(self, model: ModelSpec, tasks: list[TaskSpec]) -> list[TaskSpec]:
        """``--task all`` means every task this model can run: the others are named, with what
        the model lacks, and left out (a task named explicitly still fails the capability check)."""
        fit, skipped = [], []
        for task in tasks:
            lacking = [c for c in task.capabilities if c not in model.capabilities]
            if lacking:
                skipped.append(f"{task.name} (lacks {', '.join(lacking)})")
            else:
                fit.append(task)
        if not fit:
            raise CapabilityError(f"model {model.name!r} can run none of the tasks: {'; '.join(skipped)}")
        if skipped:
            self.report(f"--task all: model {model.name!r} runs {len(fit)} of {len(tasks)} tasks; skipped: {'; '.join(skipped)}")
        return fit

    def planned(self, model_spec: ModelSpec, spec: TaskSpec) -> PlannedTask:
        """The split and merged protocol a task runs with."""
        split = self.config.split if self.config.split in spec.splits else spec.default_split
        protocol = merge_protocol(spec.name, spec.protocol, model_spec.protocol_for(spec.name), self.config.overrides, strict=False)
        return PlannedTask(spec, split, protocol)

    def run(self, resume_dir: Path | None = None, only_task: str | None = None) -> list[dict[str, Any]]:
        with sigterm_as_interrupt():
            return self._run(resume_dir, only_task)

    def _run(self, resume_dir: Path | None, only_task: str | None) -> list[dict[str, Any]]:
        model_spec, tasks = self.plan()
        if only_task is not None:
            tasks = [t for t in tasks if t.name == only_task]
        data_root = resolve_data_root(self.config)
        device = resolve_device(self.config.device)
        precision = resolve_precision(self.config.precision, device)
        dist, device = init_distributed(device)
        output = Path(self.config.output)
        if dist.is_main:  # one process probes, so the processes of a torchrun never race on it
            check_output_dir(output)
            check_before_computing(
                model_spec, [self.planned(model_spec, task) for task in tasks], data_root,
                weights=self.config.weights, skip_bad=self.config.skip_bad, report=self.report,
            )
        self.feature_cache = open_feature_cache(self.config.feature_cache)
        records = []
        for number, task in enumerate(tasks, start=1):
            self.task_label = f"[{number}/{len(tasks)}] {task.name}"
            record = self.run_task(model_spec, task, data_root, output, device, precision, dist, resume_dir)
            if record is not None:
                records.append(record)
        return records

    def run_task(
        self, model_spec: ModelSpec, spec: TaskSpec, data_root: Path, output: Path,
        device: str, precision: str, dist: Distributed, resume_dir: Path | None,
    ) -> dict[str, Any] | None:
        config = self.config
        planned = self.planned(model_spec, spec)
        split, protocol = planned.split, dict(planned.protocol)
        task_root = data_root / spec.data_dir
        if not task_root.is_dir():
            raise DataError(f"{spec.name}: no data at {task_root} (expected the layout in docs/datasets.md)")
        started = time.perf_counter()
        task = spec.build()
        load_start = time.perf_counter()
        dataset = task.load(data_root, split, protocol, skip_bad=config.skip_bad)
        load_seconds = time.perf_counter() - load_start
        if config.limit is not None:
            dataset.samples = dataset.samples[: config.limit]
        if not dataset.samples:
            raise DataError(f"{spec.name} [{split}]: no samples to evaluate under {task_root}")

        if dist.is_main:
            if resume_dir is not None:
                run_dir = resume_dir
            else:
                name = f"{config.model}__{spec.name}__{split}__{_run_key(config, spec, split, protocol, dataset.fingerprint, precision)}"
                run_dir = output / name
            with writing_into(run_dir):
                run_dir.mkdir(parents=True, exist_ok=True)
            reuse = (run_dir / RESULT_NAME).exists() and not self.force
        shared_dir, reuse = dist.broadcast((str(run_dir), reuse) if dist.is_main else None)
        run_dir = Path(shared_dir)
        if reuse:
            if not dist.is_main:
                return None
            self.report(f"{spec.name}: already finished in {run_dir}; reusing its record (--force recomputes it)")
            self.finished_dirs.append(run_dir)
            return read_record(run_dir)
        with writing_into(run_dir):
            lock = RunLock(run_dir) if dist.is_main else None
            try:
                if dist.is_main:
                    remove_leftovers(run_dir)
                    if self.force:
                        discard_finished(run_dir)
                    check_same_data(run_dir, dataset)
                    write_json_atomic(run_dir / RUN_CONFIG_NAME, {**config.to_json(), "task": spec.name, "split": split})
                dist.barrier()
                return self._evaluate(model_spec, spec, task, dataset, protocol, split, data_root, run_dir,
                                      device, precision, dist, started, load_seconds)
            except KeyboardInterrupt:
                raise Interrupted(
                    f"interrupted; the finished predictions are saved in {run_dir}; "
                    f"resume with `harness run --resume {run_dir}` (or the same command)"
                ) from None
            finally:
                if lock is not None:
                    lock.release()

    def _evaluate(self, model_spec, spec, task, dataset, protocol, split, data_root, run_dir,
                  device, precision, dist, started, load_seconds) -> dict[str, Any] | None:
        config = self.config
        store = PredictionStore(run_dir, rank=dist.rank, flush_every=config.flush_every)
        # Every process has read (and repaired) the parts left by an earlier attempt before any
        # process appends to its own.
        dist.barrier()
        if store.resumed_count and dist.is_main:
            self.report(f"{spec.name}: resuming {run_dir} ({store.resumed_count} samples already done)")
        ctx = RunContext(
            protocol=dict(protocol), predictions=store, device=device, precision=precision,
            batch_size=config.batch_size or default_batch_size(device), seed=config.seed, num_workers=config.num_workers,
            feature_cache=self.feature_cache,
            quiet=config.quiet, skip_bad=config.skip_bad, rank=dist.rank, world_size=dist.world_size,
            label=self.task_label,
        )
        if dist.is_main and not config.quiet:
            self.report(f"{self.task_label} [{split}]: {len(dataset.samples)} samples")
        ctx.timings["load_data"] = StageTiming(load_seconds, len(dataset.samples))
        try:
            _quiet_libraries()
            _seed_everything(config.seed)
            with ctx.stage("load_model"):
                model = model_spec.build(ModelRequest(
                    task=spec.name, protocol=protocol, weights=config.weights,
                    device=device, precision=precision, seed=config.seed,
                ))
            check_instance(model, model_spec.name, spec)
            apply_cpu_threads(device, model)
            task.evaluate(model, dataset, ctx)
            store.close()
        except BaseException as exc:
            # Whatever stopped the run (a bad file, a signal, a full disk), what is finished is
            # flushed to disk so the next attempt starts from it.
            kept = len(store.predictions) + len(store.skipped)
            _close_quietly(store)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"interrupted: {kept} finished predictions are saved in {run_dir}; "
                    f"resume with `harness run --resume {run_dir}` (or the same command)"
                ) from None
            raise
        # A collective, so also the point where every process has closed its part file.
        batch_sizes_used = dist.gather(ctx.batch_size_used)
        if not dist.is_main:
            dist.barrier()
            return None
        store.reload()
        ctx.batch_size_used = min((used for used in batch_sizes_used if used is not None), default=None)
        record = self._score_and_record(model_spec, model, spec, task, dataset, protocol, ctx,
                                        split, data_root, run_dir, started)
        dist.barrier()
        return record

    def _score_and_record(self, model_spec, model, spec, task, dataset, protocol, ctx, split,
                          data_root, run_dir, started) -> dict[str, Any]:
        config = self.config
        store = ctx.predictions
        predictions = {sid: store.predictions[sid] for sid in dataset.sample_ids if sid in store.predictions}
        # Scoring and the chance levels run pycocoevalcap's Java scorers, whose chatter --quiet hides.
        with silenced_output(config.quiet):
            with ctx.stage("score", items=len(predictions)):
                metrics = task.score(dataset, predictions, ctx.protocol)
            levels = task.reference_levels(dataset, ctx.protocol)
            per_sample = task.per_sample_metrics(dataset, predictions, ctx.protocol)
        per_sample_file = None
        if per_sample:
            write_jsonl_atomic(run_dir / PER_SAMPLE_NAME,
                               ({"sample_id": sid, "metrics": values} for sid, values in per_sample.items()))
            per_sample_file = PER_SAMPLE_NAME
        outputs = [str(Path(p).relative_to(run_dir)) if Path(p).is_absolute() else str(p)
                   for p in task.write_outputs(dataset, predictions, run_dir)]
        predictions_file = store.merge(order=dataset.sample_ids)
        skipped_eval = sum(1 for sid in dataset.sample_ids if sid in store.skipped)
        record = {
            "schema": SCHEMA,
            "task": spec.name,
            "split": split,
            "model": model_spec.name,
            "weights": weights_identity(getattr(model, "weights_name", config.weights or model_spec.name),
                                        getattr(model, "weights_files", [])),
            "model_notes": list(getattr(model, "notes", [])),
            "metrics": metrics,
            "reference_levels": levels,
            "protocol": ctx.protocol,
            "data": {"root": str(data_root), "fingerprint": dataset.fingerprint, "toy": config.toy},
            "samples": {
                "total": len(dataset.samples) + len(dataset.skipped),
                "evaluated": len(predictions),
                "skipped": len(dataset.skipped) + skipped_eval,
                "skipped_samples": [s.sample_id for s in dataset.skipped] +
                                   [sid for sid in dataset.sample_ids if sid in store.skipped],
                "resumed": store.resumed_count,
                "limit": config.limit,
            },
            "timings": {
                "total_seconds": round(time.perf_counter() - started, 3),
                "stages": {name: t.as_dict() for name, t in ctx.timings.items()},
            },
            "device": ctx.device,
            "precision": ctx.precision,
            "seed": config.seed,
            "batch_size": ctx.batch_size,
            "batch_size_used": ctx.batch_size_used or ctx.batch_size,
            "world_size": ctx.world_size,
            "versions": versions(),
            "predictions_file": predictions_file.name,
            "per_sample_file": per_sample_file,
            "outputs": outputs,
            "created": now_iso(),
            "run_config": config.to_json(),
            **interpretation_fields(model_spec, spec, split, ctx.protocol, weights=config.weights,
                                    toy=config.toy, limit=config.limit, user_keys=config.overrides),
        }
        write_json_atomic(run_dir / RESULT_NAME, record)
        self.finished_dirs.append(run_dir)
        try:
            self.registry.pm.hook.harness_run_finished(record=record)
        except Exception as exc:  # a logger plugin must never fail a finished run
            warnings.warn(f"a harness_run_finished hook failed: {exc}", stacklevel=1)
        self.report(_summary_line(record, run_dir))
        return record


@contextmanager
def writing_into(run_dir: Path) -> Iterator[None]:
    """A write into the run directory that fails (a full disk or quota, a file-size limit, a
    read-only mount or directory) becomes one line naming the directory, wherever in the run it
    happens: creating it, locking it, saving ``run.json``, appending predictions, writing the
    record. Errors about files elsewhere (data, weights) pass unchanged."""
    try:
        yield
    except OSError as exc:
        outside = exc.filename is not None and not Path(exc.filename).resolve().is_relative_to(run_dir.resolve())
        if exc.errno not in _OUTPUT_ERRNOS or outside:
            raise
        raise OutputError(
            f"cannot write to {run_dir} ({os.strerror(exc.errno)}); the predictions written before "
            f"this are kept; free space (or make it writable) and resume with `harness run --resume {run_dir}`"
        ) from exc


def _close_quietly(store: PredictionStore) -> None:
    """Flush and close on the way out of a failed run; a second write error (the disk is still
    full) must not hide the first."""
    try:
        store.close()
    except OSError:
        pass


def _quiet_libraries() -> None:
    """The harness owns the terminal: transformers' own bars (one per weight load) would clutter
    every run and push a failing run's one-line error off its own line."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


RESUME_SAFE = ("skip_bad", "batch_size", "num_workers", "quiet", "feature_cache", "flush_every")
"""Options that change how a run computes, not what it computes: given with ``--resume`` they
replace the saved ones. Any other option given with ``--resume`` must equal the saved value."""
_FLAGS = {"tasks": "--task", "overrides": "--set", "toy": "--data toy"}


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/run.json`` as saved by ``run_task``, refused with one line when it is missing,
    unreadable or not the shape the harness writes (an edited or damaged file)."""
    path = run_dir / RUN_CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no {RUN_CONFIG_NAME} there; is it a harness run directory?")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as JSON ({exc}); the run cannot be resumed: start it again without --resume") from exc
    required = {"model": str, "task": str, "split": str, "tasks": str}
    wrong = [key for key, kind in required.items() if not isinstance(saved, dict) or not isinstance(saved.get(key), kind)]
    if wrong:
        raise ConfigError(
            f"{path}: not a harness run configuration (missing or malformed: {', '.join(wrong)}); "
            "the run cannot be resumed: start it again without --resume"
        )
    return saved


def resume(run_dir: Path, registry: Registry | None = None, report: Reporter = _print,
           options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Finish an interrupted run with the settings it was started with. ``options`` are the
    ``RunConfig`` fields given on the command line with ``--resume``: those in ``RESUME_SAFE``
    are honoured; any other that differs from the saved run is refused, naming the options, so
    no flag is silently ignored."""
    saved = read_run_config(run_dir)
    options = dict(options or {})
    changed = [_flag(name) for name, value in options.items() if name not in RESUME_SAFE and not _agrees(name, value, saved)]
    if changed:
        raise ConfigError(
            f"--resume {run_dir} continues that run with the settings it started with; "
            f"{', '.join(changed)} cannot change on resume (only {', '.join(map(_flag, RESUME_SAFE))} can): "
            "drop them, or start a new run without --resume"
        )
    config = RunConfig.from_json(saved)
    config.tasks = saved["task"]
    config.split = saved["split"]
    for name in RESUME_SAFE:
        if name in options:
            setattr(config, name, options[name])
    return Runner(config, registry, report).run(resume_dir=run_dir, only_task=saved["task"])


def _flag(name: str) -> str:
    """The command-line option of a ``RunConfig`` field."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _agrees(name: str, value: Any, saved: Mapping[str, Any]) -> bool:
    """Whether an option given with ``--resume`` asks for what the run already uses (``--task``
    may name the whole list the run was started with or this directory's task)."""
    if name == "tasks":
        return value in (saved["tasks"], saved["task"])
    return value == saved.get(name)


def run_from_record(record: Mapping[str, Any], output: Path, registry: Registry | None = None,
                    report: Reporter = _print) -> dict[str, Any]:
    """Run the model again with a reference record's settings (``harness regress --run``)."""
    config = RunConfig.from_json(record["run_config"])
    config.tasks, config.split, config.output = record["task"], record["split"], str(output)
    config.overrides = dict(record["protocol"])
    return Runner(config, registry, report).run()[0]

