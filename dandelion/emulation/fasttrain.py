"""Many emulated workers' local training as one vectorized numpy computation.

``train_many`` runs exactly what ``browser_worker.training.train_local`` runs for each job —
evaluate the received model on the local data, ``epochs`` of mini-batch SGD in the order the
worker's own ``random.Random`` shuffles, lazy L2 decay on the weights a batch touches, the delta
and its clipping — for a whole batch of workers at once. Each job works in its own compact
index space (the features its examples touch, then the bias), so memory is O(jobs x touched
features), never O(jobs x d). Additions happen in the pure-Python order (features of an example
in order, examples of a batch in order; ``bincount`` and ``cumsum`` accumulate sequentially), so
updates agree with the browser's code to float64 rounding of ``exp``: ``tests/
test_emulation_fasttrain.py`` holds them to 1e-9.

Vectorized for ``logreg``; other model kinds run ``train_local`` job by job (same results).
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from browser_worker.training import Hyper, LocalResult, train_local
from dandelion.taskspec.models import ModelSpec

from .localdata import LocalData

__all__ = ["SparseResult", "TrainJob", "train_many"]


@dataclass(frozen=True, slots=True)
class TrainJob:
    """One worker's assignment: its data, the received model (float32, d values) and the state
    of the ``random.Random`` the worker trains with."""

    data: LocalData
    params: np.ndarray
    rng_state: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SparseResult:
    """A LocalResult whose delta is zero outside ``touched`` (what SGD on sparse examples gives):
    small to ship between processes; ``dense`` builds the d-value update."""

    touched: np.ndarray  # int64 feature indices, ascending
    clipped: np.ndarray  # float64, the clipped delta at ``touched``
    raw: np.ndarray  # float64, the delta before clipping
    num_examples: int
    loss: float
    accuracy: float
    norm: float
    unclipped: bool

    def dense(self, d: int) -> LocalResult:
        full = np.zeros(d, dtype=np.float32)
        full[self.touched] = self.clipped
        clipped = array("f")
        clipped.frombytes(full.tobytes())
        if self.unclipped:
            raw = clipped
        else:
            full[self.touched] = self.raw
            raw = array("f")
            raw.frombytes(full.tobytes())
        return LocalResult(
            raw, clipped, self.num_examples, self.loss, self.accuracy, self.norm, self.unclipped
        )


def train_many(spec: ModelSpec, hyper: Hyper, jobs: Sequence[TrainJob]) -> list[SparseResult]:
    """Train every job; results in the order of ``jobs``. Jobs must have examples."""
    if not jobs:
        return []
    if spec.kind != "logreg":
        return [_one_pure(spec, hyper, job) for job in jobs]
    # Jobs of similar size train together: a batch runs as many steps as its largest job.
    order = sorted(range(len(jobs)), key=lambda i: len(jobs[i].data))
    out: list[SparseResult | None] = [None] * len(jobs)
    start = 0
    while start < len(order):
        smallest = max(1, len(jobs[order[start]].data))
        end = start + 1
        while end < len(order) and len(jobs[order[end]].data) <= 1.5 * smallest + 16:
            end += 1
        group = order[start:end]
        for i, result in zip(
            group, _logreg_many(spec, hyper, [jobs[i] for i in group]), strict=True
        ):
            out[i] = result
        start = end
    return [r for r in out if r is not None]


def _one_pure(spec: ModelSpec, hyper: Hyper, job: TrainJob) -> SparseResult:
    rng = random.Random()
    rng.setstate(job.rng_state)
    params = job.params.astype(np.float64).tolist()
    result = train_local(spec, params, job.data, hyper, rng)
    raw = np.asarray(result.delta, dtype=np.float64)
    touched = np.flatnonzero(raw)
    clipped = np.asarray(result.clipped_delta, dtype=np.float64)[touched]
    return SparseResult(
        touched,
        clipped,
        raw[touched],
        result.num_examples,
        result.loss,
        result.accuracy,
        result.norm,
        result.unclipped,
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # The two branches of dandelion.taskspec.models.linear._sigmoid, element by element.
    pos = z >= 0
    e = np.exp(np.where(pos, -z, z))
    return np.where(pos, 1.0 / (1.0 + e), e / (1.0 + e))


def _logreg_many(spec: ModelSpec, hyper: Hyper, jobs: Sequence[TrainJob]) -> list[SparseResult]:
    m_count = len(jobs)
    bias_index = spec.num_features
    size, epochs = hyper.batch_size, hyper.epochs
    uniques: list[np.ndarray] = []
    locals_: list[np.ndarray] = []
    for job in jobs:
        idx = job.data.indices
        valid = idx >= 0
        uniq, inverse = np.unique(idx[valid], return_inverse=True)
        loc = np.full(idx.shape, -1, dtype=np.int64)
        loc[valid] = inverse
        uniques.append(uniq)
        locals_.append(loc)
    k_slots = max(len(u) for u in uniques) + 2  # features, bias, and one shared dummy slot
    dummy = k_slots - 1
    n_max = max(len(job.data) for job in jobs)
    k_max = max(job.data.indices.shape[1] for job in jobs)
    null = n_max  # an extra all-padding row that absent batch entries point to
    slots = np.full((m_count, n_max + 1, k_max), dummy, dtype=np.int64)
    vals = np.zeros((m_count, n_max + 1, k_max), dtype=np.float64)
    ys = np.zeros((m_count, n_max + 1), dtype=np.float64)
    w = np.zeros((m_count, k_slots), dtype=np.float64)
    bias_slot = np.zeros(m_count, dtype=np.int64)
    counts = np.zeros(m_count, dtype=np.int64)
    batches = max(math.ceil(len(job.data) / size) for job in jobs)
    rows = np.full((epochs, m_count, batches * size), null, dtype=np.int64)
    for m, job in enumerate(jobs):
        data, loc, uniq = job.data, locals_[m], uniques[m]
        n, k = data.indices.shape
        counts[m] = n
        slots[m, :n, :k] = np.where(loc >= 0, loc, dummy)
        vals[m, :n, :k] = np.where(loc >= 0, data.values, 0.0)
        ys[m, :n] = data.labels == 1
        params = job.params
        w[m, : len(uniq)] = params[uniq]
        w[m, len(uniq)] = params[bias_index]
        bias_slot[m] = len(uniq)
        rng = random.Random()
        rng.setstate(job.rng_state)
        order = list(range(n))
        for e in range(epochs):
            rng.shuffle(order)  # the worker's own shuffle: same order as train_local
            rows[e, m, :n] = order
    start = w.copy()
    ar = np.arange(m_count)

    def logits(row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.take_along_axis(slots, row_ids[:, :, None], axis=1)
        v = np.take_along_axis(vals, row_ids[:, :, None], axis=1)
        gathered = np.take_along_axis(w, s.reshape(m_count, -1), axis=1).reshape(s.shape)
        z = np.repeat(w[ar, bias_slot][:, None], row_ids.shape[1], axis=1)
        for j in range(k_max):  # in the order the worker adds them
            z = z + gathered[:, :, j] * v[:, :, j]
        return z, s, v

    # Loss and accuracy of the received model on all local examples (before training).
    every = np.broadcast_to(np.arange(n_max), (m_count, n_max))
    z_all, _, _ = logits(np.ascontiguousarray(every))
    p_all = _sigmoid(z_all)
    y_all = ys[:, :n_max]
    present = np.arange(n_max)[None, :] < counts[:, None]
    prob = np.where(y_all == 1.0, p_all, 1.0 - p_all)
    row_loss = np.where(present, -np.log(np.maximum(prob, 1e-300)), 0.0)
    loss = np.cumsum(row_loss, axis=1)[:, -1] / counts
    right = ((p_all > 1.0 - p_all) == (y_all == 1.0)) & present
    accuracy = right.sum(axis=1) / counts

    lr, decay = hyper.learning_rate, hyper.learning_rate * hyper.l2
    flat_base = (ar * k_slots)[:, None, None]
    for e in range(epochs):
        # The epoch's rows in batch order, gathered once.
        epoch_rows = rows[e]
        slots_e = slots[ar[:, None], epoch_rows]
        vals_e = vals[ar[:, None], epoch_rows]
        ys_e = ys[ar[:, None], epoch_rows]
        for t in range(batches):
            cut = slice(t * size, (t + 1) * size)
            row_ids = epoch_rows[:, cut]
            real = row_ids != null
            in_batch = real.sum(axis=1)
            active = in_batch > 0
            if not active.any():
                continue
            s, v, y = slots_e[:, cut], vals_e[:, cut], ys_e[:, cut]
            gathered = w[ar[:, None, None], s]
            z = np.repeat(w[ar, bias_slot][:, None], s.shape[1], axis=1)
            for j in range(k_max):  # in the order the worker adds them
                z = z + gathered[:, :, j] * v[:, :, j]
            g = np.where(real, _sigmoid(z) - y, 0.0)
            flat = (flat_base + s).ravel()
            grad = np.bincount(flat, weights=(g[:, :, None] * v).ravel(), minlength=w.size)
            touched = np.bincount(flat, minlength=w.size) > 0
            grad = grad.reshape(w.shape)
            touched = touched.reshape(w.shape)
            gb = np.zeros(m_count)
            for r in range(g.shape[1]):  # the bias gradient, example by example
                gb = gb + g[:, r]
            grad[ar, bias_slot] = gb
            touched[ar, bias_slot] = active
            touched[:, dummy] = False
            step = np.where(active, lr / np.maximum(in_batch, 1), 0.0)
            w = np.where(touched, w - (step[:, None] * grad + decay * w), w)

    delta = w - start
    delta[:, dummy] = 0.0
    norms = np.sqrt(np.cumsum(delta * delta, axis=1)[:, -1])
    results = []
    for m in range(m_count):
        u = len(uniques[m])
        touched_ids = np.append(uniques[m].astype(np.int64), bias_index)
        raw = delta[m, : u + 1].copy()
        norm = float(norms[m])
        unclipped = norm <= hyper.clip_norm
        clipped = raw if unclipped else raw * (hyper.clip_norm / norm)
        results.append(
            SparseResult(
                touched_ids,
                clipped,
                raw,
                int(counts[m]),
                float(loss[m]),
                float(accuracy[m]),
                norm,
                bool(unclipped),
            )
        )
    return results
