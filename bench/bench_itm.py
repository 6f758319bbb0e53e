"""ITM re-rank throughput: BLIP's evaluation loop against this project's path, same weights, same
process, same pairs.

The pairs are what BLIP's two-stage retrieval asks for: every image's top-k texts and every
text's top-k images by a (synthetic) ITC similarity in which each caption lies near its image,
so that, as on real data, many pairs are chosen from both directions.

- reference: written like BLIP's ``evaluation`` in ``train_retrieval.py``: one query per forward
  pass, k pairs; for an image query its features repeated k times; texts padded to 35 tokens;
  transformers' text encoder; fp32 (BLIP's scripts do not autocast). On a GPU also under bf16.
- this project: ``BlipRetrievalModel.match`` on the distinct pairs of both directions, sorted by
  image and batched across images, through ``fast_itm`` (keys and values once per image); the
  model's precision (bf16 on a GPU, fp32 on a CPU unless ``--precision``).
- ``--breakdown`` also times the project's path without de-duplication and with transformers'
  encoder in place of ``fast_itm``, to say where the gain comes from.

Each path runs once on the queries of a few images (two full forwards of the project's path)
right before it is timed, so one-time costs stay out of every timing.

Prints the device, absolute pairs per second (pairs the protocol asks for, per second of wall
time) and the ratios, then checks that the scores agree (max abs difference; share of queries
whose re-ranked top-1 is the same, bf16 against fp32 on a GPU).

    python bench/bench_itm.py --size small          # CPU
    python bench/bench_itm.py                       # GPU: BLIP-base, bf16
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from models import build, common_arguments, describe, parse, random_texts, timed

from harness.capabilities import TextFeatures, VisualFeatures

IMAGE_TOKENS = 577
"""ViT-B/16 at 384 px: 24 x 24 patches and the CLS token."""


@dataclass
class Workload:
    image_tokens: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    to_text_sim: torch.Tensor
    to_text: torch.Tensor
    to_image_sim: torch.Tensor
    to_image: torch.Tensor

    @property
    def protocol_pairs(self) -> int:
        return self.to_text.numel() + self.to_image.numel()

    def head(self, images: int) -> Workload:
        """The queries of the first ``images`` images and of their captions' share of the texts
        (the whole gallery stays): a workload of the same shape, to time a slow loop on part of it."""
        texts = images * len(self.to_image) // len(self.to_text)
        return replace(
            self, to_text=self.to_text[:images], to_text_sim=self.to_text_sim[:images],
            to_image=self.to_image[:texts], to_image_sim=self.to_image_sim[:texts],
        )


def workload(images: int, captions: int, k: int, width: int, device: str, lengths: str, seed: int) -> Workload:
    generator = torch.Generator().manual_seed(seed)
    texts = images * captions
    image_embeds = F.normalize(torch.randn(images, 256, generator=generator), dim=-1)
    owner = torch.arange(texts) // captions
    text_embeds = F.normalize(image_embeds[owner] + 0.9 * torch.randn(texts, 256, generator=generator) / 16, dim=-1)
    sims = image_embeds @ text_embeds.T
    to_text_sim, to_text = sims.topk(k, dim=1)
    to_image_sim, to_image = sims.T.topk(k, dim=1)
    ids, mask = random_texts(texts, generator, lengths)
    return Workload(
        image_tokens=torch.randn(images, IMAGE_TOKENS, width, generator=generator).to(device),
        input_ids=ids.to(device), attention_mask=mask.to(device),
        image_embeds=image_embeds.to(device), text_embeds=text_embeds.to(device),
        to_text_sim=to_text_sim.to(device), to_text=to_text.to(device),
        to_image_sim=to_image_sim.to(device), to_image=to_image.to(device),
    )


@torch.inference_mode()
def reference_loop(model, work: Workload, autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM logits (images x k, texts x k) the way BLIP's evaluation computes them."""
    module = model.module
    ids = work.input_ids.clone()
    ids[:, 0] = model.enc_token_id
    k = work.to_text.shape[1]
    context = torch.autocast(model.device.type, dtype=torch.bfloat16) if autocast else torch.autocast(model.device.type, enabled=False)

    def itm(input_ids, attention_mask, image_tokens):
        hidden = module.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_tokens,
            encoder_attention_mask=torch.ones(image_tokens.shape[:2], dtype=torch.long, device=image_tokens.device),
        ).last_hidden_state
        return module.itm_head(hidden[:, 0])[:, 1].float()

    with context:
        to_text = torch.stack([
            itm(ids[candidates], work.attention_mask[candidates], work.image_tokens[image].repeat(k, 1, 1))
            for image, candidates in enumerate(work.to_text)
        ])
        to_image = torch.stack([
            itm(ids[text].repeat(k, 1), work.attention_mask[text].repeat(k, 1), work.image_tokens[candidates])
            for text, candidates in enumerate(work.to_image)
        ])
    return to_text, to_image


def pair_keys(work: Workload) -> torch.Tensor:
    """Every pair asked for, image->text queries first, as ``image * texts + text``."""
    texts = work.input_ids.shape[0]
    device = work.to_text.device
    return torch.cat([
        (torch.arange(len(work.to_text), device=device)[:, None] * texts + work.to_text).flatten(),
        (work.to_image * texts + torch.arange(len(work.to_image), device=device)[:, None]).flatten(),
    ])


def project_path(model, work: Workload, deduplicate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The same logits through ``model.match``: pairs of both directions, each distinct pair
    once (as ``CrossModalRanker`` does), sorted by image."""
    texts = work.input_ids.shape[0]
    keys = pair_keys(work)
    if deduplicate:
        unique, inverse = torch.unique(keys, return_inverse=True)
    else:
        unique, inverse = keys, torch.arange(len(keys), device=keys.device)
    pairs = torch.stack([unique // texts, unique % texts], dim=1)
    visual = VisualFeatures(embeds=work.image_embeds, tokens=work.image_tokens)
    text_features = TextFeatures(embeds=work.text_embeds, input_ids=work.input_ids, attention_mask=work.attention_mask)
    scores = model.match(visual, text_features, pairs).to(keys.device)[inverse]
    split = work.to_text.numel()
    return scores[:split].view_as(work.to_text), scores[split:].view_as(work.to_image)


def top1(work: Workload, logits: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Each query's re-ranked choice (index into its k candidates): ITM logit + ITC cosine."""
    return torch.cat([(logits[0] + work.to_text_sim).argmax(1), (logits[1] + work.to_image_sim).argmax(1)])


def text_lengths(work: Workload) -> str:
    tokens = work.attention_mask.sum(dim=1).float()
    return f"{int(tokens.min())}-{int(tokens.max())} tokens (mean {tokens.mean():.1f}), padded to {work.attention_mask.shape[1]}"


def rate(pairs: int, seconds: float) -> float:
    return pairs / seconds


def line(label: str, pairs: int, seconds: float, reference_rate: float) -> None:
    print(f"{label:<48}{pairs:>9} pairs {seconds:9.2f} s {rate(pairs, seconds):10.1f} pairs/s {rate(pairs, seconds) / reference_rate:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="this project's path (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--images", type=int, help="images (default: 256 on GPU, 16 on CPU)")
    parser.add_argument("--captions", type=int, default=5, help="captions per image (default 5, as COCO)")
    parser.add_argument("--k", type=int, help="candidates re-ranked per query (default: 128 on GPU, 8 on CPU)")
    parser.add_argument("--pairs-per-forward", type=int, help="pairs per text-encoder pass of this project (default: 2048 on GPU, 256 on CPU)")
    parser.add_argument("--text-lengths", choices=("full", "coco"), default="full", help="full: every text 35 tokens, BLIP's padded length, nothing for this project to skip (default); coco: COCO-like caption lengths (bench/models.py caption_words)")
    parser.add_argument("--reference-images", type=int, help="time the reference loop on the queries of this many images and their captions only (a rate; default: all on CPU, 64 on GPU)")
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings of each path (default 1)")
    parser.add_argument("--breakdown", action="store_true", help="also time without de-duplication and without fast_itm")
    args = parse(parser)
    gpu, size = args.gpu, args.size
    precision = args.precision or ("bf16" if gpu else "fp32")
    images = args.images or (1024 if gpu else 16)
    k = args.k or (64 if gpu else 8)

    model = build("retrieval", size, args.device, "fp32", args.seed)
    model.match_batch_size = args.pairs_per_forward or (2048 if gpu else 256)
    text_config = model.module.config.text_config
    work = workload(images, args.captions, k, text_config.encoder_hidden_size, args.device, args.text_lengths, args.seed)
    distinct = int(torch.unique(pair_keys(work)).numel())

    print(describe(args.device))
    print(
        f"model: BLIP {size}, random weights, text {text_config.num_hidden_layers} layers x {text_config.hidden_size}, "
        f"{IMAGE_TOKENS} image tokens x {text_config.encoder_hidden_size}, texts {text_lengths(work)}"
    )
    print(
        f"workload: {images} images x {args.captions} captions, k={k}: {work.protocol_pairs} pairs asked "
        f"({work.to_text.numel()} image->text, {work.to_image.numel()} text->image), {distinct} distinct "
        f"({100 * (1 - distinct / work.protocol_pairs):.1f}% asked twice); {model.match_batch_size} pairs per forward"
    )

    reference_work = work.head(args.reference_images or (64 if gpu else images))
    # Enough queries for two full forwards of the project's path: each path runs once on them
    # right before it is timed, so its one-time costs (memory the allocator grows into, kernels
    # chosen per shape) fall outside the timing, whichever path happens to run first.
    warm_images = -(-2 * model.match_batch_size // ((1 + args.captions) * k))
    warm_work = work.head(min(images, warm_images))

    def time_it(path, on: Workload):
        path(warm_work)
        return timed(args.device, lambda: path(on), args.repeats)

    ref_seconds, reference = time_it(lambda w: reference_loop(model, w, autocast=False), reference_work)
    ref_rate = rate(reference_work.protocol_pairs, ref_seconds)
    line("reference loop, fp32 (BLIP's scripts)", reference_work.protocol_pairs, ref_seconds, ref_rate)
    if gpu:
        seconds, _ = time_it(lambda w: reference_loop(model, w, autocast=True), reference_work)
        line("reference loop, bf16 autocast", reference_work.protocol_pairs, seconds, ref_rate)

    model.precision = precision
    seconds, ours = time_it(lambda w: project_path(model, w), work)
    line(f"this project, {precision} (batched, K/V once, de-dup)", work.protocol_pairs, seconds, ref_rate)
    if args.breakdown:
        steps = {}
        for label, fast, deduplicate in (
            ("batched across images only", False, False),
            ("  + de-duplication", False, True),
            ("  + K/V once per image, no de-dup", True, False),
        ):
            model.fast_itm = fast
            steps[label], _ = time_it(lambda w, dedup=deduplicate: project_path(model, w, deduplicate=dedup), work)
            line(label, work.protocol_pairs, steps[label], ref_rate)
        model.fast_itm = True
        print(f"K/V reuse and de-duplication alone (this project / batched only): {steps['batched across images only'] / seconds:.2f}x")

    ours_on_reference = (ours[0][: len(reference_work.to_text)], ours[1][: len(reference_work.to_image)])
    difference = max((a.to(b.device) - b).abs().max().item() for a, b in zip(ours_on_reference, reference, strict=True))
    same = (top1(reference_work, ours_on_reference) == top1(reference_work, reference)).float().mean().item()
    print(f"agreement with the reference: max |logit difference| {difference:.2e}; re-ranked top-1 the same for {100 * same:.2f}% of queries")
    if precision != "fp32":
        model.precision = "fp32"
        _, exact = timed(args.device, lambda: project_path(model, work))
        same = (top1(work, ours) == top1(work, exact)).float().mean().item()
        difference = max((a - b).abs().max().item() for a, b in zip(ours, exact, strict=True))
        print(f"{precision} against fp32 (this project, all queries): max |logit difference| {difference:.2e}; top-1 the same for {100 * same:.2f}% of queries")


if __name__ == "__main__":
    main()
