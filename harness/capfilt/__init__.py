"""CapFilt (Li et al. 2022, section 3.3): bootstrap a noisy web data set with a captioner and a filter.

A captioner (any model with ``Captioner``) writes synthetic captions for web images; a filter (any
model with ``ImageTextMatchProbability``, or ``ImageTextEmbedder`` for a CLIP-score filter) scores
the web texts and the synthetic captions, and keeps those that clear a threshold. ``harness
capfilt`` (registered by ``plugin.py``) runs it over webdataset shards; ``docs/capfilt.md`` is the
user's guide.
"""
