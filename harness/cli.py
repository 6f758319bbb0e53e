"""The ``harness`` command. Every failure a user can cause ends in one line and a documented exit
code (``harness.errors.ExitCode``), never a traceback."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import harness
from harness.errors import ExitCode, HarnessError
from harness.run_summary import closing_table as metric_table
from harness.run_summary import write_run_summary

EPILOG = "exit codes: 0 success, 1 metric gate failed, 2 usage or input error, 3 interrupted (resumable)"


def _fmt_protocol(protocol: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in protocol.items())


def _fmt_rows(rows: dict) -> str:
    """``BLIP (129M): coco_retrieval, nlvr2; ...``: each published row with the tasks it is for."""
    by_row: dict = {}
    for task, row in rows.items():
        by_row.setdefault(f"{row.model} ({row.table})", []).append(task)
    return "; ".join(f"{row}: {', '.join(tasks)}" for row, tasks in by_row.items())


def cmd_list(args: argparse.Namespace) -> int:
    from harness.registry import get_registry

    registry = get_registry().collect()
    if args.what in ("models", "all"):
        print("models:")
        for spec in registry.models.values():
            print(f"  {spec.name:<14} {spec.description}")
            print(f"  {'':<14} capabilities: {', '.join(spec.capabilities)}")
            if spec.default_weights:
                weights = ", ".join(f"{k}: {v}" for k, v in spec.default_weights.items())
                print(f"  {'':<14} weights: {weights}")
            if spec.protocol_overrides:
                print(f"  {'':<14} protocol changes: {_fmt_protocol(dict(spec.protocol_overrides))}")
            for task, changes in spec.task_protocol_overrides.items():
                print(f"  {'':<14} protocol changes for {task}: {_fmt_protocol(dict(changes))}")
            if spec.baseline_rows:
                print(f"  {'':<14} published rows (deltas in `harness compare`): {_fmt_rows(spec.baseline_rows)}")
    if args.what in ("tasks", "all"):
        print("tasks:")
        for spec in registry.tasks.values():
            print(f"  {spec.name:<29} {spec.description}")
            print(f"  {'':<29} needs: {', '.join(spec.capabilities)}; splits: {', '.join(spec.splits)} (default {spec.default_split})")
            print(f"  {'':<29} protocol: {_fmt_protocol(dict(spec.protocol))}")
    return ExitCode.OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness.config import RunConfig, parse_overrides
    from harness.runner import Runner, resume

    # The options given on the command line (None: not given; RunConfig holds the defaults), so
    # --resume can honour or refuse each one instead of ignoring it.
    given = {
        "model": args.model, "tasks": args.task, "weights": args.weights, "data_root": args.data_root,
        "toy": args.data == "toy" or None, "split": args.split, "device": args.device, "precision": args.precision,
        "batch_size": args.batch_size, "num_workers": args.num_workers, "limit": args.limit, "seed": args.seed,
        "overrides": parse_overrides(args.set) if args.set else None, "output": args.output,
        "quiet": args.quiet or None, "skip_bad": args.skip_bad or None, "flush_every": args.flush_every,
        "feature_cache": args.feature_cache,
    }
    given = {name: value for name, value in given.items() if value is not None}
    if args.log:
        from harness.config import split_names
        from harness.loggers import enable_loggers
        from harness.registry import get_registry

        enable_loggers(split_names(args.log), get_registry())
    if args.resume:
        records = resume(Path(args.resume), options=given)
        run_dirs, output = [Path(args.resume)], Path(args.resume).parent
    else:
        if not args.model or not args.task:
            raise _usage("harness run needs --model and --task (or --resume RUN_DIR)")
        if args.data and args.data != "toy":
            raise _usage(f"--data {args.data!r}: the only named data set is 'toy'; use --data-root DIR for real data")
        config = RunConfig(**given)
        runner = Runner(config, force=args.force)
        records = runner.run()
        run_dirs, output = runner.finished_dirs, Path(config.output)
    if records:
        print(metric_table(records))
        command = shlex.join(["harness", *sys.argv[1:]])
        json_path, md_path = write_run_summary(records, run_dirs, output, command)
        print(f"summary: {md_path} (and {json_path.name})")
    return ExitCode.OK


def cmd_toy_build(args: argparse.Namespace) -> int:
    from harness.toy import build_toy_suite

    path = build_toy_suite(Path(args.dir), seed=args.seed, progress=not args.quiet)
    print(f"toy suite (seed {args.seed}) written to {path}")
    return ExitCode.OK


def cmd_data_check(args: argparse.Namespace) -> int:
    from harness.preflight import data_check
    from harness.registry import get_registry
    from harness.task import CheckNote
    from harness.toy import ensure_toy_suite

    registry = get_registry()
    specs = registry.resolve_tasks(args.task)
    if args.data == "toy":
        root = ensure_toy_suite()
    elif args.data_root:
        root = Path(args.data_root)
    else:
        raise _usage("harness data check needs --data-root DIR (or --data toy)")
    problems_total = 0
    for spec in specs:
        split = args.split if args.split in spec.splits else spec.default_split
        lines = data_check(spec, root, split, spec.protocol)
        problems = [line for line in lines if not isinstance(line, CheckNote)]
        for line in lines:
            print(f"{spec.name} [{split}]: {'note: ' if isinstance(line, CheckNote) else ''}{line}")
        problems_total += len(problems)
        print(f"{spec.name} [{split}]: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    print(f"checked {len(specs)} task(s) under {root}: {problems_total} problem(s)")
    return ExitCode.OK if problems_total == 0 else ExitCode.USAGE


class _UsageError(HarnessError):
    pass


def _usage(message: str) -> HarnessError:
    return _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Evaluate vision-language models (BLIP first) on every task of the BLIP paper with the paper's protocol.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {harness.__version__}",
                        help="print the version (the one result records carry) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_list = sub.add_parser("list", help="list models and tasks", description="List registered models (with capabilities and weights) and tasks (with needs, splits and default protocol).")
    p_list.add_argument("what", nargs="?", choices=("models", "tasks", "all"), default="all")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="evaluate a model on tasks", description="Evaluate MODEL on TASKS with the paper's protocol; writes result.json and predictions.jsonl per task into a run directory. Starting the same command again resumes an interrupted run and reuses a finished one (--force recomputes it).", epilog=EPILOG)
    p_run.add_argument("--model", help="model name (see `harness list models`)")
    p_run.add_argument("--task", help="task name, comma-separated names, or 'all'")
    p_run.add_argument("--weights", help="hub id (from the local Hugging Face cache), local directory, or official BLIP .pth")
    data = p_run.add_mutually_exclusive_group()
    data.add_argument("--data-root", help="directory with the data sets in the layout of docs/datasets.md")
    data.add_argument("--data", choices=("toy",), help="'toy': build the bundled toy suite into the cache if absent, and use it")
    p_run.add_argument("--split", help="split to evaluate (default: each task's paper split)")
    p_run.add_argument("--device", help="auto|cpu|cuda (default auto: cuda when available)")
    p_run.add_argument("--precision", help="auto|fp32|bf16|fp16 (default auto: bf16 on GPU, fp32 on CPU)")
    p_run.add_argument("--batch-size", type=int, help="images per model call (default 32 on CPU, 256 on GPU; halved automatically on GPU out-of-memory)")
    p_run.add_argument("--num-workers", type=int, help="DataLoader worker processes for decoding images and videos (default 0)")
    p_run.add_argument("--feature-cache", metavar="DIR", help="reuse vision-encoder features across tasks and runs from DIR ('auto': $HARNESS_CACHE/features); keyed by weights, preprocessing, precision and image content (default off)")
    p_run.add_argument("--limit", type=int, help="evaluate only the first N samples of each task")
    p_run.add_argument("--seed", type=int, help="random seed (default 0)")
    p_run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a protocol setting, e.g. --set k_test=128 (repeatable)")
    p_run.add_argument("--output", help="directory for run directories (default results/runs)")
    p_run.add_argument("--skip-bad", action="store_true", help="skip unreadable or malformed samples and count them in the result instead of stopping")
    p_run.add_argument("--flush-every", type=int, metavar="N", help="fsync the predictions to disk every N samples (default 64); a killed run loses at most the last N-1")
    p_run.add_argument("--force", action="store_true", help="recompute tasks this command already finished (by default their records are reused and nothing is recomputed); the new run replaces the old one in the same run directory")
    p_run.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run with the settings it started with; only --skip-bad, --batch-size, --num-workers, --flush-every, --quiet and --feature-cache may change (docs/reliability.md)")
    p_run.add_argument("--quiet", action="store_true", help="no progress bars")
    p_run.add_argument("--log", action="append", metavar="LOGGER", help="also log every result record to tensorboard or wandb (repeatable or comma-separated; each needs its extra: pip install 'vl-harness[tensorboard]')")
    p_run.set_defaults(func=cmd_run)

    p_toy = sub.add_parser("toy", help="the bundled toy suite", description="Build the deterministic toy suite: a miniature data set for every task, in each task's real file format.")
    toy_sub = p_toy.add_subparsers(dest="toy_command", metavar="ACTION", required=True)
    p_build = toy_sub.add_parser("build", help="write the toy suite into DIR", description="Write the toy suite into DIR (deterministic for a seed).")
    p_build.add_argument("dir", help="output directory (must be empty or absent)")
    p_build.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p_build.add_argument("--quiet", action="store_true", help="no progress bar")
    p_build.set_defaults(func=cmd_toy_build)

    p_data = sub.add_parser("data", help="validate data sets", description="Validate annotation files and every referenced image or video before a long run.")
    data_sub = p_data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p_check = data_sub.add_parser("check", help="list every missing or unreadable record and file", description="Check every record and referenced file of a task's split; exits 2 if anything is wrong.")
    p_check.add_argument("--task", required=True, help="task name, comma-separated names, or 'all'")
    check_data = p_check.add_mutually_exclusive_group()
    check_data.add_argument("--data-root", help="data directory (layout of docs/datasets.md)")
    check_data.add_argument("--data", choices=("toy",), help="check the toy suite")
    p_check.add_argument("--split", help="split (default: the task's paper split)")
    p_check.set_defaults(func=cmd_data_check)

    from harness.compare import add_compare_parser
    from harness.regress import add_regress_parser
    from harness.report import add_report_parser

    add_compare_parser(sub)
    add_regress_parser(sub)
    add_report_parser(sub)

    from harness.registry import get_registry

    get_registry().pm.hook.harness_add_commands(subparsers=sub, toy_subparsers=toy_sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """Warnings (SPICE skipped, a library's deprecation) as one ``warning:`` line, without the
    source file and line Python would print after it."""
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return ExitCode.USAGE
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted (nothing was saved yet); run the same command again", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except OSError as exc:
        # A file-system failure no command turned into a HarnessError (a full disk or a read-only
        # folder met by `toy build`, `compare --output`...) still names its file in one line.
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return int(ExitCode.USAGE)


if __name__ == "__main__":
    sys.exit(main())
