"""Loading BLIP weights: Hugging Face directories and official ``.pth`` files (``loader``), key
mapping and configuration of official checkpoints (``checkpoint``, ``state_dicts``), position
embeddings at the protocol's resolution (``resolution``), BLIP's tokenizer (``tokenizer``) and
``harness convert`` (``convert``)."""
