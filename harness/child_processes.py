"""Stopping the external programs a block started when the block is interrupted.

pycocoevalcap runs its PTB tokenizer, METEOR and SPICE as Java child processes that it creates
and waits for itself, so the harness has no handle on them. When SIGTERM or Ctrl-C ends scoring,
those children would run on (the tokenizer to the end of its input, METEOR until the interpreter
exits, SPICE for minutes) after the harness said it stopped. Linux lists a process's children in
``/proc/<pid>/task/<tid>/children``; comparing that list before and after tells which children the
block started, and those are killed. Elsewhere the list is empty and nothing is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


def child_pids(pid: int | None = None) -> set[int]:
    """The ids of the live child processes of ``pid`` (default: this process), from /proc."""
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    children: set[int] = set()
    with contextlib.suppress(OSError):
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):
                children.update(int(p) for p in (task / "children").read_text().split())
    return children


@contextlib.contextmanager
def reap_new_children() -> Iterator[None]:
    """Kill and reap every child process started inside the block if the block raises.

    Any exception counts, ``KeyboardInterrupt`` (SIGINT, and SIGTERM as the runner maps it)
    included; children that existed before the block are left alone.
    """
    before = child_pids()
    try:
        yield
    except BaseException:
        for pid in child_pids() - before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        raise
