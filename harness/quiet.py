"""Silencing what other programs print, for ``--quiet``.

pycocoevalcap's scorers run Java subprocesses (the PTB tokenizer, METEOR, SPICE) that write
their own progress to the inherited stdout and stderr, below anything Python's ``sys.stdout``
controls; only redirecting the file descriptors themselves reaches them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silenced_output(enabled: bool = True) -> Iterator[None]:
    """Send file descriptors 1 and 2 (and so every child process's output) to /dev/null for the
    block; restored afterwards, so the harness's own error line still reaches the user."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, null):
            os.close(descriptor)
