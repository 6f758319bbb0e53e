"""What a result record says about how to read its numbers: the published row it reproduces, the
caveats a reader needs, and whether it may stand beside published results at all.

The facts come from the specs that know them (a model preset knows which paper row its weights
are and what they were trained on; a task knows what its splits are), are written into the record
when a run finishes, and are read back by ``compare`` and the run summary without importing any
plugin. Comparability is decided from recorded data (toy suite, ``--limit``), never from text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.specs import ModelSpec, TaskSpec

TOY_CAVEAT = (
    "toy suite: generated miniature data, not the benchmark's; not comparable with published numbers"
)


def limit_caveat(limit: int) -> str:
    return f"--limit {limit}: only the first {limit} samples of the split; not comparable with published numbers"


def protocol_changes(
    protocol: Mapping[str, Any], spec: TaskSpec, model: ModelSpec, user_keys: Iterable[str],
) -> dict[str, Any]:
    """What the user changed with ``--set``: the keys they set whose value differs from the
    task's default as the model adjusts it, so a table can label the run by them. Only the
    user's keys count: a task may resolve a default itself (``rerank=auto`` -> true)."""
    expected = {**spec.protocol, **{k: v for k, v in model.protocol_overrides.items() if k in spec.protocol}}
    return {key: protocol[key] for key in user_keys
            if key in expected and key in protocol and expected[key] != protocol[key]}


def run_caveats(
    model: ModelSpec, task: TaskSpec, split: str, *, default_weights: bool, toy: bool, limit: int | None,
) -> list[str]:
    """Every caveat that applies to one run, in the order a reader needs them: the data first
    (toy, subset), then the split, then the weights (only a preset's own weights are known)."""
    caveats = []
    if toy:
        caveats.append(TOY_CAVEAT)
    if limit is not None:
        caveats.append(limit_caveat(limit))
    caveats += [c.text for c in task.caveats if c.applies(task.name, split)]
    if default_weights:
        caveats += [c.text for c in model.caveats if c.applies(task.name, split)]
    return list(dict.fromkeys(caveats))


def interpretation_fields(
    model: ModelSpec, task: TaskSpec, split: str, protocol: Mapping[str, Any], *,
    weights: str | None, toy: bool, limit: int | None, user_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """The record fields that tell a reader how to read the run: ``baseline_row`` (the published
    row of the same model, known only for the preset's default weights), ``caveats``,
    ``headline_metrics`` and ``protocol_changes``."""
    default_weights = weights is None
    row = model.baseline_row(task.name) if default_weights else None
    return {
        "baseline_row": row.as_json() if row is not None else None,
        "caveats": run_caveats(model, task, split, default_weights=default_weights, toy=toy, limit=limit),
        "headline_metrics": list(task.headline_metrics),
        "protocol_changes": protocol_changes(protocol, task, model, user_keys),
    }


def not_comparable_reason(record: Mapping[str, Any]) -> str | None:
    """Why a record's numbers may not stand beside published ones (None: they may): toy data or
    a subset of the split. Read from the data fields, so records written before ``caveats``
    existed are judged the same way."""
    data = record.get("data") or {}
    samples = record.get("samples") or {}
    if data.get("toy"):
        return TOY_CAVEAT
    limit = samples.get("limit")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return limit_caveat(limit)
    return None


def headline(record: Mapping[str, Any]) -> list[str]:
    """The record's headline metrics that it has, in the task's order; every metric for a record
    whose task names none (or an older record)."""
    metrics = record.get("metrics") or {}
    named = [name for name in record.get("headline_metrics") or [] if name in metrics]
    return named or list(metrics)
