"""Registers ``harness capfilt`` through the ``harness_add_commands`` hook, as any plugin would.

Importing this module imports neither torch nor the pipeline; the command loads them when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ExitCode
from harness.hookspecs import hookimpl

DESCRIPTION = (
    "CapFilt (BLIP, Li et al. 2022): for every web image, a captioner writes synthetic captions (nucleus "
    "sampling, p=0.9, by default) and a filter scores the web texts and the synthetic captions; texts whose "
    "match probability clears the threshold are kept. Input: webdataset tar shards as img2dataset writes them "
    "(KEY.jpg with KEY.txt and/or KEY.json; a path, a directory or a brace pattern such as "
    "'shards/{00000..00009}.tar'), or BLIP's pre-training JSON list of {\"image\", \"caption\"}. Output in DIR: "
    "shards/NAME.tar (same keys, the image bytes, KEY.json with the kept texts and every scored text), "
    "capfilt.json (counts, kept fractions, score distributions, noise ratio, diversity, settings, models) and "
    "capfilt_scores.png. Starting the same command again resumes; under torchrun the shards are split "
    "between the processes. Guide: docs/capfilt.md."
)


@hookimpl
def harness_add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("capfilt", help="caption and filter a web data set (BLIP's CapFilt)",
                                   description=DESCRIPTION,
                                   epilog="exit codes: 0 success, 2 usage or input error, 3 interrupted (resumable)")
    parser.add_argument("--captioner", action="append", required=True, metavar="MODEL",
                        help="model with Captioner (see `harness list models`); repeat for an ensemble; "
                             "MODEL@R1,R2 captions only in those rounds (round 2 with another captioner: "
                             "--captioner blip@1 --captioner blip-large@2)")
    parser.add_argument("--captioner-weights", action="append", default=[], metavar="W",
                        help="weights of the captioner(s), paired with --captioner in order (default: the model's)")
    parser.add_argument("--filter", required=True, metavar="MODEL",
                        help="model with ImageTextMatchProbability (ITM filter) or ImageTextEmbedder (CLIP-score filter)")
    parser.add_argument("--filter-weights", metavar="W", help="weights of the filter (default: the model's)")
    parser.add_argument("--filter-score", default="auto", choices=("auto", "itm", "cosine"),
                        help="itm: the match probability; cosine: the ITC cosine (CLIP score); auto (default): itm "
                             "when the filter has it")
    parser.add_argument("--input", required=True, metavar="SRC",
                        help="tar shard, directory of shards, brace pattern, or BLIP pre-training .json")
    parser.add_argument("--image-root", metavar="DIR",
                        help="folder the .json input's image paths are relative to (default: the .json's folder)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory (resumed when it holds the same run)")
    parser.add_argument("--captions-per-image", type=int, default=1, metavar="N",
                        help="synthetic captions per image, per captioner and round (default 1, the paper's)")
    parser.add_argument("--sampling", default="nucleus", choices=("nucleus", "beam"),
                        help="nucleus (default, the paper's) or beam search (the captioning protocol's beams; deterministic, so one caption and one round)")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling's p (default 0.9)")
    parser.add_argument("--threshold", default="auto", metavar="T",
                        help="keep a text when its score >= T (default: 0.5 for probabilities, 0.28 for cosines), or "
                             "top:F to keep the fraction F of each source's texts per shard")
    parser.add_argument("--rounds", type=int, default=1, metavar="R",
                        help="caption rounds: each round adds N new captions per captioner, and the filter scores "
                             "the union (default 1)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N samples of each shard")
    parser.add_argument("--shard-size", type=int, default=1000, metavar="N",
                        help="records per output shard for a .json input (default 1000)")
    parser.add_argument("--batch-size", type=int, help="images per model call (default 32 on CPU, 256 on GPU)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto: cuda when available)")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16 (default auto: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled captions (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from harness.capfilt.pipeline import run_capfilt
    from harness.capfilt.settings import CapFiltSettings

    settings = CapFiltSettings(
        input=args.input, captioners=tuple(args.captioner), captioner_weights=tuple(args.captioner_weights),
        filter=args.filter, filter_weights=args.filter_weights, filter_score=args.filter_score,
        captions_per_image=args.captions_per_image, sampling=args.sampling, top_p=args.top_p,
        threshold=args.threshold, rounds=args.rounds, limit=args.limit, seed=args.seed,
        batch_size=args.batch_size, precision=args.precision, shard_size=args.shard_size,
        image_root=args.image_root,
    )
    run_capfilt(settings, args.device, Path(args.output), quiet=args.quiet)
    return ExitCode.OK
