"""What model families share rather than copy: BLIP's evaluation image transform
(``preprocess.py``, used by BLIP and BLIP-2), where weights come from (``weights.py``: hub
cache, local directory or official file, never a download) and loading a transformers class that
refuses weights which do not fit (``checked_loading.py``)."""
