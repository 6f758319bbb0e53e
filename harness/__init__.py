"""A benchmark harness for vision-language models, built first for BLIP.

Plugins implement hooks marked with ``harness.hookimpl``; see ``harness.hookspecs``.
"""

from harness.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
