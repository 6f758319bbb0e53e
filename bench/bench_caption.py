"""Captioning throughput: beam 3, max length 20, min length 5, prompt "a picture of ".

Times, on the same randomly initialised BLIP captioning model in the same process:

- reference: what BLIP's ``generate`` does per batch of its test loader, in fp32: the ViT (eager
  attention, as transformers ships it), then the text decoder's beam search through
  transformers' ``generate``, ``--reference-batch`` images per call, on the first
  ``--reference-images`` images (its cost per image does not depend on which);
- this project: ``encode_images`` (the ViT with fused attention) then ``BlipCaptionModel.caption``
  (``beam_search.py``) in batches of ``--batch-size``, in fp32 and at the run's precision (bf16
  on a GPU).

Each path is warmed up once on a full batch first, so one-time costs (kernel selection for each
new shape) stay out of the figures, as they are amortised over a real test set. With random
weights no caption ends early, so every beam runs to the full 20 tokens: the slowest case.
Prints images per second of both and whether the fp32 captions are identical.

    python bench/bench_caption.py                     # GPU: BLIP-base
    python bench/bench_caption.py --size small        # CPU
"""

from __future__ import annotations

import argparse

import torch
from models import build, common_arguments, describe, eager_vision, parse, timed

from harness.capabilities import GenerationSettings
from harness_plugins.blip.heads.generation import decoding_kwargs

SETTINGS = GenerationSettings(num_beams=3, max_length=20, min_length=5, prompt="a picture of ")


def reference(model, pixels: torch.Tensor, batch_size: int) -> list[str]:
    """BLIP's generate, batch by batch: prompt with ``[DEC]`` first and no ``[SEP]``."""
    module = model.module
    prompt = model.tokenizer([SETTINGS.prompt], return_tensors="pt")["input_ids"][:, :-1]
    prompt[:, 0] = module.config.text_config.bos_token_id
    captions = []
    with torch.inference_mode(), eager_vision(module):
        for start in range(0, len(pixels), batch_size):
            tokens = module.vision_model(pixel_values=pixels[start : start + batch_size].to(model.device)).last_hidden_state
            generated = module.text_decoder.generate(
                input_ids=prompt.repeat(len(tokens), 1).to(model.device),
                encoder_hidden_states=tokens,
                encoder_attention_mask=torch.ones(tokens.shape[:2], dtype=torch.long, device=model.device),
                **decoding_kwargs(SETTINGS, model.tokenizer),
            )
            captions += model.tokenizer.batch_decode(generated, skip_special_tokens=True)
    return captions


def project(model, pixels: torch.Tensor, batch_size: int) -> list[str]:
    captions = []
    for start in range(0, len(pixels), batch_size):
        visual = model.encode_images(pixels[start : start + batch_size])
        captions += model.caption(visual, SETTINGS)
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="this project's path (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--images", type=int, help="images (default: 1024 on GPU, 8 on CPU)")
    parser.add_argument("--batch-size", type=int, help="images per caption call of this project (default: 256 on GPU, 8 on CPU)")
    parser.add_argument("--reference-batch", type=int, help="images per generate call of the reference (default: 32 on GPU, 8 on CPU)")
    parser.add_argument("--reference-images", type=int, help="images the reference captions (default: all on CPU, 256 on GPU)")
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings of each path (default 1)")
    args = parse(parser)
    gpu, size = args.gpu, args.size
    precision = args.precision or ("bf16" if gpu else "fp32")
    images = args.images or (2048 if gpu else 8)
    batch_size = args.batch_size or (1024 if gpu else 8)
    reference_batch = args.reference_batch or (32 if gpu else 8)
    reference_images = min(images, args.reference_images or (256 if gpu else images))

    model = build("caption", size, args.device, "fp32", args.seed)
    pixels = torch.randn(images, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(args.seed))
    print(describe(args.device))
    print(f"BLIP {size} captioning, random weights; {images} images, beam 3, max 20, min 5, prompt {SETTINGS.prompt!r}")

    reference(model, pixels[:reference_batch], reference_batch)  # warm-up
    project(model, pixels[:batch_size], batch_size)
    seconds, expected = timed(args.device, lambda: reference(model, pixels[:reference_images], reference_batch), args.repeats)
    reference_rate = reference_images / seconds
    print(f"reference generate, fp32, batch {reference_batch:<5}{seconds:9.2f} s {reference_rate:9.1f} images/s  1.00x  ({reference_images} images)")
    seconds, fp32 = timed(args.device, lambda: project(model, pixels, batch_size), args.repeats)
    print(f"this project, fp32, batch {batch_size:<11}{seconds:9.2f} s {images / seconds:9.1f} images/s {images / seconds / reference_rate:5.2f}x")
    same = sum(a.removeprefix(SETTINGS.prompt.strip()).strip() == b for a, b in zip(expected, fp32, strict=False))
    print(f"fp32 captions identical to the reference for {same} of {reference_images} images")
    if precision != "fp32":
        model.precision = precision
        project(model, pixels[:batch_size], batch_size)  # warm-up at this precision
        seconds, _ = timed(args.device, lambda: project(model, pixels, batch_size), args.repeats)
        print(f"this project, {precision}, batch {batch_size:<11}{seconds:9.2f} s {images / seconds:9.1f} images/s {images / seconds / reference_rate:5.2f}x")


if __name__ == "__main__":
    main()
