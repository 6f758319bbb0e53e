"""A deterministic miniature of every BLIP benchmark, in each benchmark's real file formats.

Scenes of coloured shapes (64x64 pictures, 24-frame videos) with captions, questions, pair
statements and dialogs that are true by construction: tests and CI run every task end to end on
it in seconds, and a tiny model can be trained on its train splits.
"""

from harness.toy.suite import TOY_VERSION, build_toy_suite, ensure_toy_suite

__all__ = ["TOY_VERSION", "build_toy_suite", "ensure_toy_suite"]
