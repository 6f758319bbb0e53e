"""The BLIP model plugin (Li et al. 2022): every head of the paper on transformers' BLIP modules.

Layout, one job per module:
- ``plugin``: the three presets and ``harness convert`` (imports no torch);
- ``catalog``: which head and which released weights each task uses;
- ``weights``, ``loader``, ``checkpoint``, ``convert``, ``resolution``, ``tokenizer``, ``tiny``:
  finding and loading weights (hub cache, directories, official ``.pth``, the tiny model);
- ``base`` and one module per head: ``retrieval`` (ITC, ITM, VisDial), ``captioning``, ``vqa``,
  ``verification`` (NLVR2, on the twin cross-attention of ``nlvr2``);
- ``preprocess``, ``generation``, ``masking``: BLIP's preprocessing, decoding settings, and a fix
  for transformers' cross-attention mask.
"""
