"""Capability protocols: the only place where tasks and models meet.

A task names the protocols it needs; a model plugin implements the ones it can. Every method is
batched: tensors or lists in, tensors or lists out, one call per batch, never per sample. Models
take CPU or device tensors and move them themselves; they run under ``torch.inference_mode`` and
the run's precision.

Visual features are produced once (``encode_images`` / ``encode_videos``) and handed to every
head, so the runner can cache them and the ITM re-rank can reuse them for all candidate texts.
A video is a stack of frames: its features carry the frame embeddings pooled the model's way and
the tokens of all frames concatenated, so every head that accepts image features accepts video
features unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class VisualFeatures:
    """Features of a batch of images or videos.

    ``embeds`` (N, D): L2-normalised projected embeddings for contrastive (ITC) similarity; (N, Q, D)
    for a model whose image is several query embeddings (BLIP-2: 32), which then implements
    ``ImageTextSimilarity``; may be None for models whose encoder has no ITC projection (e.g. a VQA
    model).
    ``tokens`` (N, L, H): the vision encoder's token features that cross-attention heads read;
    for a video, L = frames x tokens-per-frame.
    """

    embeds: torch.Tensor | None
    tokens: torch.Tensor

    @staticmethod
    def concat(parts: Sequence[VisualFeatures]) -> VisualFeatures:
        """Row-wise concatenation of encoded batches (no ITC embeddings if any batch has none)."""
        import torch

        embeds = None if any(p.embeds is None for p in parts) else torch.cat([p.embeds for p in parts])
        return VisualFeatures(embeds=embeds, tokens=torch.cat([p.tokens for p in parts]))


@dataclass
class TextFeatures:
    """Features of a batch of texts: normalised ITC embeddings (M, D) plus the tokenisation the
    matcher needs, so texts are tokenised once for both ITC and ITM."""

    embeds: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


LENGTH_NORMALIZATIONS = ("blip", "generated")
"""How beam search normalises a finished hypothesis's summed log-probability by its length:
``blip`` as transformers 4.15 (which BLIP's results come from) did, by the length of the whole
sequence before the end token, prompt included; ``generated`` as transformers 5 does, by the
number of generated tokens, end token included."""


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings for captioning and generative VQA; lengths count the prompt's tokens
    as BLIP does. ``prompt`` is the text a caption continues; for VQA it is a template whose
    ``{}`` receives the question ("" asks the question as it is). ``length_penalty`` is the
    exponent of the length a finished beam's summed log-probability is divided by (1: BLIP's mean
    per token; 0: the plain sum, as BLIP-2's zero-shot VQA with OPT ranks beams)."""

    num_beams: int = 3
    max_length: int = 20
    min_length: int = 5
    repetition_penalty: float = 1.0
    sample: bool = False
    top_p: float = 0.9
    prompt: str = ""
    length_penalty: float = 1.0
    length_normalization: str = "blip"
    """One of :data:`LENGTH_NORMALIZATIONS`; beam search only."""

    def __post_init__(self) -> None:
        if self.length_normalization not in LENGTH_NORMALIZATIONS:
            raise ValueError(
                f"length_normalization must be one of {', '.join(LENGTH_NORMALIZATIONS)}, "
                f"got {self.length_normalization!r}"
            )


@dataclass(frozen=True)
class DialogContext:
    """One VisDial round as the model needs it: the image caption, the previous rounds as
    (question, answer) pairs, and the current question."""

    caption: str
    history: Sequence[tuple[str, str]] = field(default_factory=tuple)
    question: str = ""


@runtime_checkable
class ImagePreprocessor(Protocol):
    """Turns PIL images (or decoded video frames as PIL images) into the model's pixel tensor."""

    image_size: int

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, 3, S, S) float tensor at the model's resolution and normalisation."""


@runtime_checkable
class ImageEncoder(Protocol):
    """Runs the vision encoder once per image; every head below consumes its output."""

    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        """pixels (B, 3, S, S) -> features of B images."""


@runtime_checkable
class VideoEncoder(Protocol):
    """Encodes frame stacks and pools them the model's way (BLIP: mean of frame embeddings,
    re-normalised; tokens of all frames concatenated)."""

    def encode_videos(self, frames: torch.Tensor) -> VisualFeatures:
        """frames (B, F, 3, S, S) -> features of B videos."""


@runtime_checkable
class ImageTextEmbedder(Protocol):
    """Contrastive (ITC) embeddings; images go through ``ImageEncoder.encode_images``."""

    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures: ...

    def encode_texts(self, texts: Sequence[str]) -> TextFeatures:
        """Texts -> normalised embeddings (M, D) and their token ids for the matcher."""


@runtime_checkable
class ImageTextSimilarity(Protocol):
    """Optional part of ``ImageTextEmbedder`` for a model whose ITC similarity is not one dot
    product per pair (BLIP-2: the maximum over its query embeddings). Models without it are
    scored by ``dot_product_similarity``; use ``image_text_similarity`` to get either."""

    def similarity(self, visual: VisualFeatures, texts: TextFeatures) -> torch.Tensor:
        """(N, M) float32 ITC similarity of every visual row with every text row."""


def dot_product_similarity(visual: VisualFeatures, texts: TextFeatures) -> torch.Tensor:
    """(N, M) cosine similarity of single normalised embeddings, in float32 on the visual side's
    device: BLIP's and CLIP's ITC score, without a temperature."""
    embeds = visual.embeds.float()
    return embeds @ texts.embeds.to(embeds.device).float().T


def image_text_similarity(model: object, visual: VisualFeatures, texts: TextFeatures) -> torch.Tensor:
    """The ITC similarity matrix an ``ImageTextEmbedder`` defines: its own ``similarity`` when it
    implements ``ImageTextSimilarity``, else the dot product of single embeddings."""
    if isinstance(model, ImageTextSimilarity):
        return model.similarity(visual, texts)
    return dot_product_similarity(visual, texts)


@runtime_checkable
class ImageTextMatcher(Protocol):
    """Image-text matching (ITM) scores for chosen pairs."""

    def match(
        self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor
    ) -> torch.Tensor:
        """pairs (P, 2) of (visual row, text row) -> (P,) match logits (the "match" class logit;
        higher means a better match). Rows index ``visual.tokens`` and ``texts.input_ids``."""


@runtime_checkable
class ImageTextMatchProbability(Protocol):
    """Probability that a pair matches, for filters that threshold it (CapFilt keeps a text when
    it reaches 0.5). ``ImageTextMatcher.match`` returns only the "match" logit, which re-ranking
    adds to the ITC cosine; a probability needs every class of the matching head (BLIP: the
    softmax of its two ITM logits, taken at "match"), so it is a capability of its own."""

    def match_probability(
        self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor
    ) -> torch.Tensor:
        """pairs (P, 2) of (visual row, text row), as for ``ImageTextMatcher.match`` -> (P,)
        probabilities in [0, 1] that each text describes its image."""


@runtime_checkable
class Captioner(Protocol):
    """Caption generation conditioned on visual features."""

    def caption(self, visual: VisualFeatures, settings: GenerationSettings) -> list[str]:
        """One caption per visual row, the prompt stripped."""


@runtime_checkable
class VisualQuestionAnswerer(Protocol):
    """Open-ended VQA, by generation or by ranking a closed answer list."""

    def answer(
        self, visual: VisualFeatures, questions: Sequence[str], settings: GenerationSettings
    ) -> list[str]:
        """Generate one answer per (visual row, question)."""

    def rank_answers(
        self,
        visual: VisualFeatures,
        questions: Sequence[str],
        answer_list: Sequence[str],
        k: int,
    ) -> list[int]:
        """For each (visual row, question) the index into ``answer_list`` of the best answer."""


@runtime_checkable
class PairVerifier(Protocol):
    """NLVR2: does a statement hold for a pair of images?"""

    def verify(
        self, left: VisualFeatures, right: VisualFeatures, statements: Sequence[str]
    ) -> torch.Tensor:
        """(B,) probability that each statement is true for its (left, right) pair."""


@runtime_checkable
class DialogAnswerRanker(Protocol):
    """VisDial (discriminative): score candidate answers for a dialog round."""

    def score_dialog_answers(
        self,
        visual: VisualFeatures,
        contexts: Sequence[DialogContext],
        candidates: Sequence[Sequence[str]],
    ) -> torch.Tensor:
        """(B, C) scores, higher is better, for C candidates of each round."""


CAPABILITIES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ImagePreprocessor,
        ImageEncoder,
        VideoEncoder,
        ImageTextEmbedder,
        ImageTextMatcher,
        ImageTextMatchProbability,
        Captioner,
        VisualQuestionAnswerer,
        PairVerifier,
        DialogAnswerRanker,
    )
}
"""Capability name -> protocol; specs name capabilities by these strings so listing imports no torch."""
