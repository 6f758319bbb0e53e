"""A COCO-5k-shaped image-text retrieval end to end: 5,000 images, 25,000 captions, k = 256.

Runs what ``coco_retrieval`` runs after decoding, on a BLIP-sized model with random weights:
the ViT over every image (random pixels), the text encoder over every caption (synthetic
sentences of COCO-like lengths), then the task's own ``CrossModalRanker``: ITC similarities, each query's top k, and
the ITM re-rank of all distinct pairs through ``BlipRetrievalModel.match`` in groups of
``--batch-size`` images, exactly as in a run.

The ITC embeddings that choose the candidates are synthetic (each caption near its image, as on
real data): random weights give every image nearly the same embedding, and the candidate lists,
hence how many pairs both directions share, would be meaningless. The image tokens the ITM head
reads are the ViT's own. Image decoding is not included (it runs in DataLoader workers).

    python bench/bench_retrieval_e2e.py                                   # GPU: the full COCO 5k shape
    python bench/bench_retrieval_e2e.py --size small --images 32 --k 16  # CPU, scaled down
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from models import build, caption_words, common_arguments, describe, parse, timed

from harness.capabilities import TextFeatures, VisualFeatures
from harness.context import RunContext
from harness.predictions import PredictionStore
from harness_plugins.blip.loading.tokenizer import tiny_tokenizer
from harness_tasks.retrieval import CrossModalRanker, encode_texts


def synthetic_captions(count: int, generator: torch.Generator) -> list[str]:
    """Captions of whole-word tokens with COCO-like lengths (``caption_words``): the ITM stage
    runs on real tokens, so its speed depends on how long captions are, not only on how many."""
    vocabulary = [word for word in tiny_tokenizer().get_vocab() if word.isalpha() and len(word) > 2]
    words = caption_words(count, generator).tolist()
    picks = torch.randint(0, len(vocabulary), (count, max(words)), generator=generator).tolist()
    return [" ".join(vocabulary[i] for i in row[:length]) for row, length in zip(picks, words, strict=True)]


def synthetic_embeds(images: int, captions: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ITC embeddings where each caption lies near its image (cosine about 0.75)."""
    image_embeds = F.normalize(torch.randn(images, 256, generator=generator), dim=-1)
    owner = torch.arange(images * captions) // captions
    noise = torch.randn(len(owner), 256, generator=generator) / 16
    return image_embeds, F.normalize(image_embeds[owner] + 0.9 * noise, dim=-1)


def encode_images(model, images: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    tokens = []
    for start in range(0, images, batch_size):
        count = min(batch_size, images - start)
        pixels = torch.randn(count, 3, model.image_size, model.image_size, generator=generator)
        tokens.append(model.encode_images(pixels).tokens)
    return torch.cat(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on GPU, fp32 on CPU (as harness run)")
    parser.add_argument("--images", type=int, help="gallery images (default: 5000 on GPU, 32 on CPU)")
    parser.add_argument("--captions", type=int, default=5, help="captions per image (default 5)")
    parser.add_argument("--k", type=int, help="k_test (default: 256 on GPU, 16 on CPU)")
    parser.add_argument("--batch-size", type=int, help="harness run --batch-size (default: 256 on GPU, 32 on CPU)")
    parser.add_argument("--pairs-per-forward", type=int, help="ITM pairs per text-encoder pass (default: 2048 on GPU, 256 on CPU)")
    args = parse(parser)
    gpu, size = args.gpu, args.size
    precision = args.precision or ("bf16" if gpu else "fp32")
    images = args.images or (5000 if gpu else 32)
    k = args.k or (256 if gpu else 16)
    batch_size = args.batch_size or (256 if gpu else 32)
    generator = torch.Generator().manual_seed(args.seed)

    model = build("retrieval", size, args.device, precision, args.seed)
    model.match_batch_size = args.pairs_per_forward or (2048 if gpu else 256)
    captions = synthetic_captions(images * args.captions, generator)
    image_embeds, text_embeds = synthetic_embeds(images, args.captions, generator)
    print(describe(args.device))
    print(
        f"BLIP {size}, random weights, {precision}; {images} images x {args.captions} captions, k={k}, "
        f"--batch-size {batch_size}, {model.match_batch_size} ITM pairs per forward"
    )

    with tempfile.TemporaryDirectory() as run_dir:
        ctx = RunContext(
            protocol={}, predictions=PredictionStore(Path(run_dir)), device=args.device, precision=precision,
            batch_size=batch_size, quiet=True,
        )
        model.encode_images(torch.randn(2, 3, model.image_size, model.image_size))  # warm-up
        start = time.perf_counter()
        image_seconds, tokens = timed(args.device, lambda: encode_images(model, images, batch_size, generator))
        text_seconds, texts = timed(args.device, lambda: encode_texts(model, captions, ctx))
        visual = VisualFeatures(embeds=image_embeds.to(args.device), tokens=tokens)
        texts = TextFeatures(embeds=text_embeds.to(args.device), input_ids=texts.input_ids, attention_mask=texts.attention_mask)
        owners = [list(range(i * args.captions, (i + 1) * args.captions)) for i in range(images)]
        text_owner = [i for i in range(images) for _ in range(args.captions)]
        ranker = CrossModalRanker(model, visual, texts, owners, text_owner, k, rerank=True)
        rank_seconds, results = timed(args.device, lambda: list(ranker.rank(list(range(images)), batch_size, ctx)))
        total = time.perf_counter() - start

    asked = images * k + len(captions) * min(k, images)
    scored = ctx.timings["itm_rerank"].items
    itm_seconds = ctx.timings["itm_rerank"].seconds
    print(f"encode images (ViT)   {image_seconds:9.2f} s {images / image_seconds:10.1f} images/s")
    tokens = texts.attention_mask.sum(dim=1).float()
    print(
        f"encode texts          {text_seconds:9.2f} s {len(captions) / text_seconds:10.1f} texts/s "
        f"({int(tokens.min())}-{int(tokens.max())} tokens, mean {tokens.mean():.1f})"
    )
    print(
        f"rank + ITM re-rank    {rank_seconds:9.2f} s  {asked} pairs asked, {scored} distinct scored "
        f"({100 * (1 - scored / asked):.1f}% asked twice); ITM stage {itm_seconds:.2f} s, "
        f"{asked / itm_seconds:.1f} pairs asked/s, {scored / itm_seconds:.1f} pairs scored/s"
    )
    print(f"end to end            {total:9.2f} s  ({total / 60:.2f} min) for {len(results)} query groups")


if __name__ == "__main__":
    main()
