"""What model families share rather than copy: BLIP's evaluation image transform
(``preprocess.py``, used by BLIP and BLIP-2) and where weights come from (``weights.py``: hub
cache, local directory or official file, never a download)."""
