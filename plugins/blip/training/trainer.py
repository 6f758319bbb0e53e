"""``harness toy train``: train ``blip-tiny`` on the toy suite's train splits, BLIP's way.

1. Pre-training (ITC + ITM with hard negatives + captioning LM, one loss per step) on COCO and
   Flickr30k train captions. As in BLIP, the captioning decoder shares the ViT and every text
   parameter except self-attention with the text encoder: the transformers modules of the
   retrieval and captioning heads are built separately, then the decoder's embeddings,
   cross-attention and feed-forward blocks are replaced by the encoder's own modules, so one
   optimizer step trains all three objectives on shared weights. The LM loss uses BLIP's
   captioning prompt "a picture of ", so pre-training doubles as the captioning fine-tune.
   Each step also trains the retrieval head's ITM on VisDial train rounds (the true answer
   against three wrong candidates of the round): BLIP released no VisDial model, and captions
   alone never show the ITM head a dialog followed by an answer.
2. VQA fine-tune, initialised as BLIP does (ViT and image-grounded text encoder from the
   retrieval head, answer decoder from the captioning decoder), on VQA v2 train plus the
   MSRVTT-QA and MSVD-QA train questions (frame tokens concatenated, as the video QA tasks feed
   the model).
3. NLVR2 fine-tune: the twin model's ViT and text encoder come from the retrieval head, both
   branches of each cross-attention from its single cross-attention (BLIP's initialisation),
   the merge layers and classifier fresh; BLIP's training-time swap of the two images (with
   "left" and "right" exchanged in the statement) doubles the pairs.

Everything is deterministic for a seed on CPU; the weights are stored in float16 (half the
bytes; the loaders compute in float32) so all four heads ship in under 10 MB.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from harness_plugins.blip.catalog import CAPTION, NLVR2, RETRIEVAL, TINY_IMAGE_SIZE, VQA
from harness_plugins.blip.fast.masking import honour_cross_attention_masks
from harness_plugins.blip.loading.convert import replace_directory, save_head
from harness_plugins.blip.loading.tokenizer import enc_token_id
from harness_plugins.blip.tiny import TINY_WEIGHTS_DIR, random_tiny
from harness_plugins.blip.training import losses
from harness_plugins.blip.training.data import (
    CaptionSet,
    DialogSet,
    NLVR2Set,
    VideoQASet,
    VQASet,
    caption_set,
    dialog_set,
    nlvr2_set,
    video_qa_set,
    vqa_set,
)

PROMPT = "a picture of "
MAX_TEXT_TOKENS = 35
DIALOG_MAX_TOKENS = 256
DIALOG_HISTORY_ROUNDS = 10
TRAIN_THREADS = 2
INITIAL_TEMP = 0.07
TEMP_RANGE = (0.001, 0.5)


@dataclass(frozen=True)
class Stage:
    """One optimisation stage: ``steps`` AdamW steps, linear warm-up then cosine decay."""

    steps: int
    lr: float
    batch_size: int
    warmup: int = 50
    weight_decay: float = 0.05


@dataclass(frozen=True)
class Recipe:
    pretrain: Stage = Stage(steps=1200, lr=1e-3, batch_size=48)
    dialog_batch_size: int = 4
    """VisDial rounds per pre-training step (each with its true answer and 3 wrong candidates)."""
    vqa: Stage = Stage(steps=1200, lr=5e-4, batch_size=32)
    video_qa_batch_size: int = 4
    nlvr2: Stage = Stage(steps=2500, lr=2e-4, batch_size=32)


@dataclass
class StageResult:
    name: str
    steps: int
    first_loss: float
    last_loss: float
    seconds: float


@dataclass
class TrainResult:
    out_dir: Path
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    bytes_written: int = 0

    def summary(self) -> str:
        stages = ", ".join(f"{s.name} {s.steps} steps loss {s.first_loss:.3f}->{s.last_loss:.3f}" for s in self.stages)
        return (
            f"trained blip-tiny in {self.seconds:.0f}s wall, {self.cpu_seconds:.0f}s CPU ({stages}); "
            f"{self.bytes_written / 1e6:.1f} MB of weights in {self.out_dir}"
        )


class Batches:
    """Index batches over ``n`` items, reshuffled every epoch by ``generator`` (deterministic)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self._order = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        if len(self._order) < self.batch_size:
            self._order = torch.cat([self._order, torch.randperm(self.n, generator=self.generator)])
        batch, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return batch


class Texts:
    """Texts tokenised once; ``rows`` returns a batch cut to its longest text."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], max_length: int, first_token: int | None = None,
                 truncation_side: str = "right") -> None:
        previous = tokenizer.truncation_side
        tokenizer.truncation_side = truncation_side
        try:
            encoded = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        finally:
            tokenizer.truncation_side = previous
        self.ids, self.mask = encoded["input_ids"], encoded["attention_mask"]
        if first_token is not None:
            self.ids[:, 0] = first_token

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask[index]
        length = int(mask.sum(dim=1).max())
        return self.ids[index][:, :length], mask[:, :length]


def run_stage(
    name: str, parameters: Sequence[nn.Parameter], stage: Stage, step: Callable[[], torch.Tensor], progress: bool
) -> StageResult:
    """Optimise ``step()``'s loss for ``stage.steps`` steps; first and last loss are averages over
    the first and last 10% of steps."""
    unique = list({id(p): p for p in parameters if p.requires_grad}.values())
    optimizer = torch.optim.AdamW(unique, lr=stage.lr, weight_decay=stage.weight_decay)

    def factor(i: int) -> float:
        if i < stage.warmup:
            return (i + 1) / stage.warmup
        return 0.5 * (1 + math.cos(math.pi * (i - stage.warmup) / max(1, stage.steps - stage.warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    window = max(1, stage.steps // 10)
    history: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(stage.steps), desc=f"train {name}", disable=not progress, file=sys.stderr, leave=False)
    for _ in bar:
        loss = step()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unique, 5.0)
        optimizer.step()
        schedule.step()
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{sum(history[-window:]) / len(history[-window:]):.3f}")
    bar.close()
    return StageResult(
        name, stage.steps, sum(history[:window]) / window, sum(history[-window:]) / window,
        time.perf_counter() - start,
    )


def share_text_and_vision(retrieval: nn.Module, caption: nn.Module) -> None:
    """Make the captioning head use the retrieval head's ViT and every text encoder module but
    self-attention (BLIP's encoder-decoder sharing); the LM output layer stays tied to the
    (now shared) word embeddings."""
    caption.vision_model = retrieval.vision_model
    encoder, decoder = retrieval.text_encoder, caption.text_decoder
    decoder.bert.embeddings = encoder.embeddings
    for source, target in zip(encoder.encoder.layer, decoder.bert.encoder.layer, strict=True):
        target.crossattention, target.intermediate, target.output = source.crossattention, source.intermediate, source.output
    decoder.cls.predictions.decoder.weight = decoder.bert.embeddings.word_embeddings.weight


def vqa_from_pretrained(vqa: nn.Module, retrieval: nn.Module, caption: nn.Module) -> None:
    """BLIP's VQA initialisation: ViT and text encoder from pre-training, decoder from the LM."""
    vqa.vision_model.load_state_dict(retrieval.vision_model.state_dict())
    vqa.text_encoder.load_state_dict(retrieval.text_encoder.state_dict())
    vqa.text_decoder.load_state_dict(caption.text_decoder.state_dict())


def nlvr2_from_pretrained(model: nn.Module, retrieval: nn.Module) -> None:
    """BLIP's NLVR2 initialisation: ViT and text encoder from pre-training, each branch of the twin
    cross-attention (``self0``/``self1``, ``dense0``/``dense1``) from the single pre-trained one;
    only the merge layers and the classifier start fresh."""
    model.vision_model.load_state_dict(retrieval.vision_model.state_dict())
    state = {}
    for key, tensor in retrieval.text_encoder.state_dict().items():
        if ".crossattention.self." in key:
            state[key.replace(".self.", ".self0.")] = tensor
            state[key.replace(".self.", ".self1.")] = tensor
        elif ".crossattention.output.dense." in key:
            state[key.replace(".dense.", ".dense0.")] = tensor
            state[key.replace(".dense.", ".dense1.")] = tensor
        else:
            state[key] = tensor
    missing, unexpected = model.text_encoder.load_state_dict(state, strict=False)
    fresh = [key for key in missing if ".merge_layer." not in key]
    if fresh or unexpected:
        raise RuntimeError(f"NLVR2 initialisation does not fit: missing {fresh}, unexpected {unexpected}")


_SIDES = re.compile(r"\b(left|right)\b")


def swap_sides(sentence: str) -> str:
    """The statement about the pair with its images swapped: "left" and "right" exchanged."""
    return _SIDES.sub(lambda m: "right" if m.group(1) == "left" else "left", sentence)


class Trainer:
    """Holds the four heads, the data and the seeded generator; each ``*_step`` returns a loss."""

    def __init__(self, data_root: Path, seed: int, recipe: Recipe) -> None:
        self.recipe = recipe
        self.generator = torch.Generator().manual_seed(seed)
        heads = {head: random_tiny(head, TINY_IMAGE_SIZE, seed) for head in (RETRIEVAL, CAPTION, VQA, NLVR2)}
        self.tokenizer = heads[RETRIEVAL].tokenizer
        self.models = {head: loaded.module for head, loaded in heads.items()}
        for module in self.models.values():
            honour_cross_attention_masks(module)
        self.enc_id = enc_token_id(self.tokenizer)
        self.bos_id = self.tokenizer.bos_token_id
        self.temp = nn.Parameter(torch.tensor(INITIAL_TEMP))
        self.captions: CaptionSet = caption_set(data_root, TINY_IMAGE_SIZE)
        self.dialogs: DialogSet = dialog_set(data_root, TINY_IMAGE_SIZE, DIALOG_HISTORY_ROUNDS)
        self.vqa_data: VQASet = vqa_set(data_root, TINY_IMAGE_SIZE)
        self.video_qa: VideoQASet = video_qa_set(data_root, TINY_IMAGE_SIZE)
        self.nlvr2_data: NLVR2Set = nlvr2_set(data_root, TINY_IMAGE_SIZE)
        self.prompt_length = len(self.tokenizer(PROMPT)["input_ids"]) - 1

    # -- pre-training ---------------------------------------------------------------------
    def pretrain(self, progress: bool) -> list[StageResult]:
        retrieval, caption = self.models[RETRIEVAL], self.models[CAPTION]
        share_text_and_vision(retrieval, caption)
        retrieval.train(), caption.train()
        stage = self.recipe.pretrain
        texts = Texts(self.tokenizer, self.captions.captions, MAX_TEXT_TOKENS)
        prompted = Texts(self.tokenizer, [PROMPT + c for c in self.captions.captions], MAX_TEXT_TOKENS, self.bos_id)
        by_image = _captions_by_image(self.captions.image_of, len(self.captions.pixels))
        images = Batches(len(self.captions.pixels), stage.batch_size, self.generator)
        dialog = _DialogBatches(self, self.recipe.dialog_batch_size)

        def step() -> torch.Tensor:
            image_rows = images.next()
            picks = torch.randint(0, 1 << 30, (len(image_rows),), generator=self.generator)
            caption_rows = torch.stack([by_image[r][p % len(by_image[r])] for r, p in zip(image_rows.tolist(), picks.tolist(), strict=True)])
            tokens = retrieval.vision_model(pixel_values=self.captions.pixels[image_rows]).last_hidden_state
            ids, mask = texts.rows(caption_rows)
            text_cls = retrieval.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
            image_feat = F.normalize(retrieval.vision_proj(tokens[:, 0]), dim=-1)
            text_feat = F.normalize(retrieval.text_proj(text_cls), dim=-1)
            with torch.no_grad():
                self.temp.clamp_(*TEMP_RANGE)
            itc, sim = losses.itc_loss(image_feat, text_feat, image_rows, self.temp)
            itm = losses.itm_loss(
                retrieval.text_encoder, retrieval.itm_head, tokens, ids, mask, image_rows, sim, self.enc_id, self.generator
            )
            lm = losses.lm_loss(caption.text_decoder, tokens, *prompted.rows(caption_rows), self.prompt_length)
            return itc + itm + lm + dialog.loss()

        parameters = [*retrieval.parameters(), *caption.parameters(), self.temp]
        return [run_stage("pretrain", parameters, stage, step, progress)]

    # -- VQA ------------------------------------------------------------------------------
    def finetune_vqa(self, progress: bool) -> list[StageResult]:
        vqa = self.models[VQA]
        vqa_from_pretrained(vqa, self.models[RETRIEVAL], self.models[CAPTION])
        vqa.train()
        data, video = self.vqa_data, self.video_qa
        stage = self.recipe.vqa
        questions = Texts(self.tokenizer, data.questions, MAX_TEXT_TOKENS, self.enc_id)
        answer_texts = sorted({a for answers in data.answers for a in answers} | set(video.answers))
        answer_row = {a: i for i, a in enumerate(answer_texts)}
        answers = Texts(self.tokenizer, answer_texts, MAX_TEXT_TOKENS, self.bos_id)
        video_questions = Texts(self.tokenizer, video.questions, MAX_TEXT_TOKENS, self.enc_id)
        image_batches = Batches(len(data.questions), stage.batch_size, self.generator)
        video_batches = Batches(len(video.questions), self.recipe.video_qa_batch_size, self.generator)

        def qa_loss(image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                    answer_lists: list[list[str]], weight_lists: list[list[float]]) -> torch.Tensor:
            states = vqa.text_encoder(
                input_ids=ids, attention_mask=mask, encoder_hidden_states=image_tokens,
                encoder_attention_mask=torch.ones(image_tokens.shape[:2], dtype=torch.long),
            ).last_hidden_state
            owner = torch.tensor([q for q, options in enumerate(answer_lists) for _ in options])
            rows = torch.tensor([answer_row[a] for options in answer_lists for a in options])
            weights = torch.tensor([w for ws in weight_lists for w in ws])
            answer_ids, answer_mask = answers.rows(rows)
            return losses.answer_loss(vqa.text_decoder, states, mask, answer_ids, answer_mask, owner, weights)

        def step() -> torch.Tensor:
            rows = image_batches.next()
            tokens = vqa.vision_model(pixel_values=data.pixels[data.image_of[rows]]).last_hidden_state
            loss = qa_loss(tokens, *questions.rows(rows), [data.answers[r] for r in rows.tolist()],
                           [data.weights[r] for r in rows.tolist()])
            video_rows = video_batches.next()
            frames = video.frames[video.video_of[video_rows]]
            frame_tokens = vqa.vision_model(pixel_values=frames.flatten(0, 1)).last_hidden_state
            frame_tokens = frame_tokens.reshape(len(video_rows), -1, frame_tokens.shape[-1])
            video_loss = qa_loss(frame_tokens, *video_questions.rows(video_rows),
                                 [[video.answers[r]] for r in video_rows.tolist()], [[1.0]] * len(video_rows))
            return loss + video_loss

        return [run_stage("vqa", list(vqa.parameters()), stage, step, progress)]

    # -- NLVR2 ----------------------------------------------------------------------------
    def finetune_nlvr2(self, progress: bool) -> list[StageResult]:
        model = self.models[NLVR2]
        nlvr2_from_pretrained(model, self.models[RETRIEVAL])
        model.train()
        data, stage = self.nlvr2_data, self.recipe.nlvr2
        sentences = data.sentences + [swap_sides(s) for s in data.sentences]
        texts = Texts(self.tokenizer, sentences, MAX_TEXT_TOKENS, self.enc_id)
        left = torch.cat([data.left, data.right])
        right = torch.cat([data.right, data.left])
        labels = torch.cat([data.labels, data.labels])
        batches = Batches(len(sentences), stage.batch_size, self.generator)

        def step() -> torch.Tensor:
            rows = batches.next()
            tokens = model.vision_model(pixel_values=data.pixels[torch.cat([left[rows], right[rows]])]).last_hidden_state
            tokens_left, tokens_right = tokens.chunk(2)
            logits = model(tokens_left, tokens_right, *texts.rows(rows))
            return F.cross_entropy(logits, labels[rows])

        return [run_stage("nlvr2", list(model.parameters()), stage, step, progress)]


class _DialogBatches:
    """VisDial train rounds for the retrieval head's ITM: the true answer against three wrong
    candidates drawn at random from the round's options, each read after "caption history
    question" with ``[ENC]`` first, left-truncated as the ranker truncates."""

    NEGATIVES = 3
    SHORTLIST = 15

    def __init__(self, trainer: Trainer, batch_size: int) -> None:
        self.trainer = trainer
        data = trainer.dialogs
        self.batches = Batches(len(data.contexts), batch_size, trainer.generator)

    def loss(self) -> torch.Tensor:
        trainer, data = self.trainer, self.trainer.dialogs
        if self.batches.batch_size == 0:
            return torch.zeros(())
        retrieval = trainer.models[RETRIEVAL]
        rows = self.batches.next().tolist()
        texts, image_rows, labels = [], [], []
        for row in rows:
            options = data.candidates[row]
            gt = int(data.gt_index[row])
            wrong = [i for i in range(len(options)) if options[i] != options[gt]]
            picks = torch.randperm(len(wrong), generator=trainer.generator)[: self.NEGATIVES].tolist()
            for index, label in [(gt, 1), *((wrong[p], 0) for p in picks)]:
                texts.append(f"{data.contexts[row]} {options[index]}")
                image_rows.append(int(data.image_of[row]))
                labels.append(label)
        encoded = Texts(trainer.tokenizer, texts, DIALOG_MAX_TOKENS, truncation_side="left")
        ids, mask = encoded.ids, encoded.mask
        tokens = retrieval.vision_model(pixel_values=data.pixels[torch.tensor(image_rows)]).last_hidden_state
        logits = losses.itm_logits(retrieval.text_encoder, retrieval.itm_head, tokens, ids, mask, trainer.enc_id)
        return F.cross_entropy(logits, torch.tensor(labels))


def _captions_by_image(image_of: torch.Tensor, num_images: int) -> list[torch.Tensor]:
    rows: list[list[int]] = [[] for _ in range(num_images)]
    for caption, image in enumerate(image_of.tolist()):
        rows[image].append(caption)
    return [torch.tensor(r) for r in rows]


def save_heads(models: dict[str, nn.Module], tokenizer: Any, out_dir: Path) -> int:
    """Write each head as a Hugging Face directory (NLVR2 with ``save_nlvr2``) in float16, into a
    staging folder moved into place at the end; returns the bytes written."""
    out_dir = Path(out_dir)

    def write(staging: Path) -> None:
        for head, module in models.items():
            save_head(copy.deepcopy(module).eval().half(), head, tokenizer, staging / head)

    replace_directory(out_dir, write)
    return sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())


def train_tiny(
    data_root: Path, out_dir: Path = TINY_WEIGHTS_DIR, seed: int = 0, recipe: Recipe = Recipe(), progress: bool = True
) -> TrainResult:
    """Train every head of ``blip-tiny`` on the toy suite at ``data_root`` and save them to
    ``out_dir``. Deterministic for ``seed`` (CPU, ``TRAIN_THREADS`` threads)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            trainer = Trainer(Path(data_root), seed, recipe)
            stages = trainer.pretrain(progress) + trainer.finetune_vqa(progress) + trainer.finetune_nlvr2(progress)
        written = save_heads(trainer.models, trainer.tokenizer, Path(out_dir))
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)
    return TrainResult(Path(out_dir), stages, time.perf_counter() - start, time.process_time() - cpu_start, written)


def run_train(args: argparse.Namespace) -> int:
    """The ``harness toy train`` command."""
    from harness.toy import ensure_toy_suite

    data_root = Path(args.data_root) if args.data_root else ensure_toy_suite()
    result = train_tiny(data_root, Path(args.out) if args.out else TINY_WEIGHTS_DIR, args.seed)
    print(result.summary())
    return 0
