"""Session-wide fixtures: the toy suite built once, and uninterrupted reference runs that the
resume, fault and distributed tests compare their interrupted runs against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cli_process import only_run_dir, read_predictions, read_result, run_harness

from harness.toy import ensure_toy_suite


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A harness cache (``HARNESS_CACHE``) holding the toy suite, so ``--data toy`` finds it."""
    cache = tmp_path_factory.mktemp("harness-cache")
    ensure_toy_suite(cache)
    return cache


@pytest.fixture(scope="session")
def toy_root(toy_cache: Path) -> Path:
    """The toy suite's root, for ``--data-root``; read-only for tests (copy a task to corrupt it)."""
    return ensure_toy_suite(toy_cache)


Reference = tuple[dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, toy_cache: Path) -> Callable[[Sequence[str]], Reference]:
    """``reference_run(args)``: (result record, predictions) of ``harness run ARGS`` run once,
    uninterrupted, in a subprocess; cached for the session by its arguments."""
    cache: dict[tuple[str, ...], Reference] = {}

    def run(args: Sequence[str]) -> Reference:
        key = tuple(args)
        if key not in cache:
            output = tmp_path_factory.mktemp("reference")
            done = run_harness(["run", *args, "--output", str(output)], toy_cache)
            assert done.returncode == 0, done.stderr
            run_dir = only_run_dir(output)
            cache[key] = read_result(run_dir), read_predictions(run_dir)
        return cache[key]

    return run


@pytest.fixture
def one_thread() -> Any:
    """One CPU thread for an in-process tiny model, as the CLI subprocesses get
    (``cli_process.harness_env``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
