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
    """One worker's assignment: its data, the received model (float32, d values) and the
    ``random.Random`` the worker trains with — the generator itself (trained in this process,
    it is used up as the worker would use it) or its ``getstate()`` (shipped to a process)."""

    data: LocalData
    params: np.ndarray
    rng_state: tuple[Any, ...] | random.Random


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
    params = job.params.astype(np.float64).tolist()
    result = train_local(spec, params, job.data, hyper, _rng_of(job))
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


def _rng_of(job: TrainJob) -> random.Random:
    if isinstance(job.rng_state, random.Random):
        return job.rng_state
    rng = random.Random()
    rng.setstate(job.rng_state)
    return rng


def shuffled_order(rng: random.Random, n: int, epochs: int) -> list[list[int]]:
    """The example order of each epoch: ``random.Random.shuffle`` of ``list(range(n))``, done
    ``epochs`` times in place, draw for draw (the same ``getrandbits`` calls, so the generator
    ends in the same state), without its per-element method calls."""
    order = list(range(n))
    getrandbits = rng.getrandbits
    out = []
    for _ in range(epochs):
        k = n.bit_length()  # bits of the bound i + 1, kept as the bound goes down
        low = 1 << max(k - 1, 0)
        for i in range(n - 1, 0, -1):
            bound = i + 1
            if bound < low:
                k -= 1
                low >>= 1
            j = getrandbits(k)
            while j >= bound:
                j = getrandbits(k)
            order[i], order[j] = order[j], order[i]
        out.append(order[:])
    return out


@dataclass(frozen=True, slots=True)
class _Compact:
    """A device's examples in their own index space, computed once while its data is cached:
    ``uniq`` the features they touch (ascending), then the bias at slot ``len(uniq)`` and a
    padding slot at ``len(uniq) + 1`` whose weight stays 0; ``slots`` and ``vals`` (n, k)
    with padding pointing at that slot with value 0; ``ys`` the labels as 0/1."""

    uniq: np.ndarray
    touched: np.ndarray  # uniq, then the bias index: where the delta lives
    slots: np.ndarray
    vals: np.ndarray
    ys: np.ndarray


def _compact(data: LocalData, bias_index: int) -> _Compact:
    memo = data.memo
    if isinstance(memo, _Compact) and memo.touched[-1] == bias_index:
        return memo
    idx = data.indices
    valid = idx >= 0
    uniq, inverse = np.unique(idx[valid], return_inverse=True)
    pad = len(uniq) + 1
    slots = np.full(idx.shape, pad, dtype=np.int64)
    slots[valid] = inverse
    vals = np.where(valid, data.values, 0.0)
    ys = (data.labels == 1).astype(np.float64)
    touched = np.append(uniq.astype(np.int64), bias_index)
    compact = _Compact(uniq, touched, slots, vals, ys)
    data.memo = compact
    return compact


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # The two branches of dandelion.taskspec.models.linear._sigmoid, element by element.
    # exp(-|z|) is exp(-z) where z >= 0 and exp(z) elsewhere (-0.0 and 0.0 give the same 1.0).
    e = np.exp(-np.abs(z))
    d = 1.0 + e
    return np.where(z >= 0, 1.0 / d, e / d)


def _flat_scores(w_flat: np.ndarray, bias: np.ndarray, f: np.ndarray, v: np.ndarray) -> np.ndarray:
    """z = bias + w[f_0] v_0 + w[f_1] v_1 + ..., row by row, added in the worker's order, with
    the weights gathered by flat index (``f``: (m, rows, k) into ``w_flat``)."""
    prod = w_flat.take(f)
    prod *= v
    z: np.ndarray = bias[:, None] + prod[:, :, 0]
    for j in range(1, f.shape[2]):
        z += prod[:, :, j]
    return z


def _logreg_many(spec: ModelSpec, hyper: Hyper, jobs: Sequence[TrainJob]) -> list[SparseResult]:
    m_count = len(jobs)
    bias_index = spec.num_features
    size, epochs = hyper.batch_size, hyper.epochs
    compacts = [_compact(job.data, bias_index) for job in jobs]
    k_slots = max(len(c.uniq) for c in compacts) + 2  # features, bias, padding
    n_max = max(c.slots.shape[0] for c in compacts)
    k_max = max(c.slots.shape[1] for c in compacts)
    null = n_max  # an extra all-padding row that absent batch entries point to
    pad_slot = np.array([len(c.uniq) + 1 for c in compacts], dtype=np.int64)
    bias_slot = pad_slot - 1
    slots = np.empty((m_count, n_max + 1, k_max), dtype=np.int64)
    slots[...] = pad_slot[:, None, None]
    vals = np.zeros((m_count, n_max + 1, k_max), dtype=np.float64)
    ys = np.zeros((m_count, n_max + 1), dtype=np.float64)
    w = np.zeros((m_count, k_slots), dtype=np.float64)
    counts = np.array([c.slots.shape[0] for c in compacts], dtype=np.int64)
    batches = max(math.ceil(int(n) / size) for n in counts)
    rows = np.full((epochs, m_count, batches * size), null, dtype=np.int64)
    ar = np.arange(m_count)
    for m, (job, c) in enumerate(zip(jobs, compacts, strict=True)):
        n, k = c.slots.shape
        slots[m, :n, :k] = c.slots
        vals[m, :n, :k] = c.vals
        ys[m, :n] = c.ys
        w[m, : len(c.uniq) + 1] = job.params[c.touched]
        # The worker's own shuffle: same order as train_local.
        rows[:, m, :n] = shuffled_order(_rng_of(job), n, epochs)
    start = w.copy()

    # Loss and accuracy of the received model on all local examples (before training).
    flat_base = (ar * k_slots)[:, None, None]
    z_all = _flat_scores(w.ravel(), w[ar, bias_slot], flat_base + slots[:, :n_max], vals[:, :n_max])
    p_all = _sigmoid(z_all)
    y_all = ys[:, :n_max]
    present = np.arange(n_max)[None, :] < counts[:, None]
    prob = np.where(y_all == 1.0, p_all, 1.0 - p_all)
    row_loss = np.where(present, -np.log(np.maximum(prob, 1e-300)), 0.0)
    loss = np.cumsum(row_loss, axis=1)[:, -1] / counts
    right = ((p_all > 1.0 - p_all) == (y_all == 1.0)) & present
    accuracy = right.sum(axis=1) / counts

    lr, decay = hyper.learning_rate, hyper.learning_rate * hyper.l2
    never = (ar * k_slots + pad_slot, ar * k_slots + bias_slot)
    for e in range(epochs):
        # The epoch's rows in batch order, gathered once, as indices into the flat weights.
        epoch_rows = rows[e]
        flat_e = flat_base + slots[ar[:, None], epoch_rows]
        vals_e = vals[ar[:, None], epoch_rows]
        ys_e = ys[ar[:, None], epoch_rows]
        real_e = epoch_rows != null
        in_batch_e = real_e.reshape(m_count, batches, size).sum(axis=2)
        for t in range(batches):
            in_batch = in_batch_e[:, t]
            active = in_batch > 0
            if not active.any():
                continue
            cut = slice(t * size, (t + 1) * size)
            f, v, y, real = flat_e[:, cut], vals_e[:, cut], ys_e[:, cut], real_e[:, cut]
            w_flat = w.ravel()
            z = _flat_scores(w_flat, w_flat[never[1]], f, v)
            g = np.where(real, _sigmoid(z) - y, 0.0)
            flat = f.ravel()
            # bincount adds in index order of ``flat``: examples in order, features in order.
            grad = np.bincount(flat, weights=(g[:, :, None] * v).ravel(), minlength=w.size)
            touched = np.zeros(w.size, dtype=bool)
            touched[flat] = True
            touched[never[0]] = False
            grad[never[1]] = np.cumsum(g, axis=1)[:, -1]  # the bias, example by example
            touched[never[1]] = active
            step = np.where(active, lr / np.maximum(in_batch, 1), 0.0)
            grad = grad.reshape(w.shape)
            w = np.where(touched.reshape(w.shape), w - (step[:, None] * grad + decay * w), w)

    delta = w - start
    delta[ar, pad_slot] = 0.0
    norms = np.sqrt(np.cumsum(delta * delta, axis=1)[:, -1])
    results = []
    for m, c in enumerate(compacts):
        raw = delta[m, : len(c.uniq) + 1].copy()
        norm = float(norms[m])
        unclipped = norm <= hyper.clip_norm
        clipped = raw if unclipped else raw * (hyper.clip_norm / norm)
        results.append(
            SparseResult(
                c.touched,
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
