"""CapFilt throughput: a per-image loop against ``harness capfilt``'s batched path, same weights,
same process.

For every image: N synthetic captions by nucleus sampling (p = 0.9, the captioning protocol's
prompt and lengths), then the filter's match probability for the web text and each caption.

- per-image loop: what a script written around BLIP's demo does: for one image, the captioner's
  ViT, then N ``caption`` calls of one row; then the filter's ViT and, for each of its texts, one
  ``encode_texts`` and one ``match_probability`` call on that single pair;
- this project: ``harness.capfilt.pipeline.caption_and_score`` on batches of ``--batch-size``
  images: one ViT pass per model and batch, the N captions of all images in one ``caption``
  call, and all the batch's texts in one ``encode_texts`` and one ``match_probability`` call
  (``fast_itm``: cross-attention keys and values once per image).

Random weights (nothing is downloaded; speed does not depend on the values) and random RGB
images; web texts are words of the tiny vocabulary at COCO-like lengths. With random weights almost no
caption ends early, so nearly every one runs to the maximum length: the slowest case. Each path is
warmed up once first. Prints images per second of both, the ratio, and the largest difference of
the web texts' probabilities between the two paths (the same pairs, so it must be ~0 in fp32).

    python bench/bench_capfilt.py --size small       # CPU
    python bench/bench_capfilt.py                    # GPU: BLIP-base, bf16
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from models import build, caption_words, common_arguments, describe, parse, timed
from PIL import Image

from harness.capfilt.models import SyntheticCaptioner, TextFilter
from harness.capfilt.pipeline import Roles, caption_and_score
from harness.capfilt.settings import CapFiltSettings

PROTOCOL = {"prompt": "a picture of ", "max_length": 20, "min_length": 5, "num_beams": 3}
"""BLIP's captioning protocol; sampling replaces the beams."""


def workload(images: int, tokenizer, seed: int) -> tuple[list[Image.Image], list[list[str]]]:
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    pictures = [Image.fromarray(rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)) for _ in range(images)]
    words = [w for w in tokenizer.get_vocab() if w.isalpha()]
    lengths = caption_words(images, generator).tolist()
    texts = [[" ".join(words[int(i)] for i in torch.randint(len(words), (n,), generator=generator))] for n in lengths]
    return pictures, texts


def per_image_loop(roles: Roles, images: list, web_texts: list[list[str]], n: int) -> list[list[float]]:
    """One image at a time, one caption and one text at a time; the web texts' probabilities."""
    captioner, text_filter = roles.captioners[0][1], roles.filter
    web_scores = []
    for image, own in zip(images, web_texts, strict=True):
        model = captioner.model
        visual = model.encode_images(model.preprocess([image]))
        captions = [model.caption(visual, captioner.settings)[0] for _ in range(n)]
        filter_visual = text_filter.model.encode_images(text_filter.model.preprocess([image]))
        scores = []
        for text in [*own, *captions]:
            features = text_filter.model.encode_texts([text])
            scores.append(float(text_filter.model.match_probability(filter_visual, features, torch.tensor([[0, 0]]))[0]))
        web_scores.append(scores[: len(own)])
    return web_scores


def batched(roles: Roles, settings: CapFiltSettings, images: list, web_texts: list[list[str]]) -> list[list[float]]:
    scores = []
    for start in range(0, len(images), settings.batch_size):
        texts = caption_and_score(images[start : start + settings.batch_size], web_texts[start : start + settings.batch_size],
                                  roles, settings, ("bench", start))
        scores += [[t["score"] for t in own if t["source"] == "web"] for own in texts]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="both paths (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--images", type=int, help="images (default: 512 on GPU, 8 on CPU)")
    parser.add_argument("--loop-images", type=int, help="images the per-image loop does (default: all on CPU, 64 on GPU)")
    parser.add_argument("--captions-per-image", type=int, default=1, help="synthetic captions per image (default 1, the paper's)")
    parser.add_argument("--batch-size", type=int, help="images per batch of this project (default: 256 on GPU, 8 on CPU)")
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings of each path (default 1)")
    args = parse(parser)
    precision = args.precision or ("bf16" if args.gpu else "fp32")
    images_count = args.images or (512 if args.gpu else 8)
    loop_count = min(images_count, args.loop_images or (64 if args.gpu else images_count))
    batch_size = args.batch_size or (256 if args.gpu else 8)
    n = args.captions_per_image

    captioner = SyntheticCaptioner("bench", build("caption", args.size, args.device, precision, args.seed),
                                   PROTOCOL, "nucleus", 0.9)
    roles = Roles([("bench", captioner)], TextFilter("bench", build("retrieval", args.size, args.device, precision, args.seed + 1), "itm"))
    settings = CapFiltSettings(
        input="bench", captioners=("bench",), captioner_weights=(), filter="bench", filter_weights=None,
        filter_score="itm", captions_per_image=n, sampling="nucleus", top_p=0.9, threshold="0.5", rounds=1,
        limit=None, seed=args.seed, batch_size=batch_size, precision=precision, shard_size=1, image_root=None,
    )
    images, web_texts = workload(images_count, captioner.model.tokenizer, args.seed)
    print(describe(args.device))
    print(f"BLIP {args.size} CapFilt, random weights, {precision}; {images_count} images, {n} nucleus caption(s) "
          f"per image (p 0.9, max 20, min 5), ITM probability of 1 web text + {n} caption(s)")

    per_image_loop(roles, images[:1], web_texts[:1], n)  # warm-up
    batched(roles, settings, images[:batch_size], web_texts[:batch_size])
    seconds, loop_scores = timed(args.device, lambda: per_image_loop(roles, images[:loop_count], web_texts[:loop_count], n),
                                 args.repeats)
    loop_rate = loop_count / seconds
    print(f"per-image loop                {seconds:9.2f} s {loop_rate:9.2f} images/s  1.00x  ({loop_count} images)")
    seconds, batch_scores = timed(args.device, lambda: batched(roles, settings, images, web_texts), args.repeats)
    rate = images_count / seconds
    print(f"this project, batch {batch_size:<10}{seconds:9.2f} s {rate:9.2f} images/s {rate / loop_rate:5.2f}x")
    difference = max(abs(a - b) for x, y in zip(loop_scores, batch_scores, strict=False) for a, b in zip(x, y, strict=True))
    print(f"web-text match probabilities, loop vs batched: max |difference| {difference:.2e}")


if __name__ == "__main__":
    main()
