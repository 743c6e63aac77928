"""Which local examples a worker holds out of training, for evaluation rounds.

A task with ``[evaluation]`` tells its workers a ``holdout`` fraction. Each worker holds out, for
that task and for good, the examples whose hash falls below the fraction: BLAKE2b-64 of
``"{worker_id}:{task}:{key}"`` read little-endian, below ``holdout x 2^64``, where ``key`` is the
example's content (its label, its regression target, indices and values; whatever objective
made it, built-in or a plugin, an example is a ``dandelion.taskspec.Example``). So the choice
is a stable function of the worker, the task and the example — the same at every round, after
a restart, in Pyodide and in CPython — and no shift of the list (old history expiring, new
visits arriving) moves an example from one side to the other. Training never sees a held-out
example; an evaluation sees only them. Nothing of the choice leaves the device.

Rules of this file: standard library only, pure functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["held_out", "split"]

_SCALE = 2**64


def _key(example: Any) -> str:
    """An example's content as text: ``label|target|indices|values`` for an ``Example``, its
    repr for anything else."""
    label = getattr(example, "label", None)
    indices = getattr(example, "indices", None)
    values = getattr(example, "values", None)
    target = getattr(example, "target", None)
    if label is None or indices is None or values is None or target is None:
        return repr(example)
    return f"{label}|{float(target)!r}|{tuple(indices)!r}|{tuple(values)!r}"


def held_out(worker_id: str, task: str, example: Any, fraction: float) -> bool:
    """Whether ``worker_id`` holds ``example`` out of training for ``task``."""
    text = f"{worker_id}:{task}:{_key(example)}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * _SCALE


def split(
    worker_id: str, task: str, examples: Sequence[Any], fraction: float | None
) -> tuple[Sequence[Any], list[Any]]:
    """``(to train on, held out)``: with no ``fraction`` (a task without evaluation) nothing
    is held out and ``examples`` comes back as it was."""
    if not fraction:
        return examples, []
    train: list[Any] = []
    held: list[Any] = []
    for example in examples:
        (held if held_out(worker_id, task, example, fraction) else train).append(example)
    return train, held
