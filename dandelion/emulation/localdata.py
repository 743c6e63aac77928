"""One emulated device's local data, held compactly, and the synthetic population it comes from.

A device's examples are what the browser worker would compute from its own signals: the
objective's synthetic signals (``Objective.synthetic``) through the objective's own pipeline
(``Objective.examples``), the same plugin code a browser runs. They are kept as numpy arrays
instead of thousands of ``Example`` objects (about 10x less memory), and read back as
``Example`` objects on demand, so the pure-Python trainer and the vectorized one see exactly
the same data.

Rules of this file: no I/O beyond an optional ``.npz`` data table (its format and checks:
``tableformat.py``); deterministic per seed.
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from browser_worker.datasets import EPOCH

from ..taskspec.models import Example
from ..taskspec.registry import objective
from .tableformat import read_table

__all__ = [
    "DataSource",
    "DeviceData",
    "LocalData",
    "SyntheticSource",
    "TableSource",
    "load_table",
    "pack",
    "save_table",
]

_DAY = 86400.0


class LocalData(Sequence[Example]):
    """A device's examples: ``indices`` (n, k) int32 with -1 as padding, ``values`` (n, k)
    float64, ``labels`` (n,) int8 (int16 past 127 classes), and for a regression objective
    ``targets`` (n,) float64. Indexing yields the same ``Example`` objects the browser worker
    would have built."""

    __slots__ = ("indices", "labels", "memo", "targets", "values")

    def __init__(
        self,
        indices: np.ndarray,
        values: np.ndarray,
        labels: np.ndarray,
        targets: np.ndarray | None = None,
    ) -> None:
        self.indices = indices
        self.values = values
        self.labels = labels
        self.targets = targets
        #: What a trainer derived from these examples once (``fasttrain``'s compact index
        #: space), kept while the data is cached: a device's data is the same every round.
        self.memo: Any = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @overload
    def __getitem__(self, i: int) -> Example: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Example]: ...
    def __getitem__(self, i: int | slice) -> Example | Sequence[Example]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.indices[i]
        keep = row >= 0
        target = float(self.targets[i]) if self.targets is not None else 0.0
        return Example(
            tuple(row[keep].tolist()),
            tuple(self.values[i][keep].tolist()),
            int(self.labels[i]),
            target,
        )

    def __iter__(self) -> Iterator[Example]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        extra = self.targets.nbytes if self.targets is not None else 0
        return int(self.indices.nbytes + self.values.nbytes + self.labels.nbytes + extra)


def pack(examples: Sequence[Example]) -> LocalData:
    """The compact form of ``examples`` (rows padded to the longest with index -1)."""
    n = len(examples)
    k = max((len(ex.indices) for ex in examples), default=1)
    indices = np.full((n, k), -1, dtype=np.int32)
    values = np.zeros((n, k), dtype=np.float64)
    wide = any(ex.label > 127 for ex in examples)
    labels = np.zeros(n, dtype=np.int16 if wide else np.int8)
    regression = any(ex.target for ex in examples)
    targets = np.zeros(n, dtype=np.float64) if regression else None
    for r, ex in enumerate(examples):
        m = len(ex.indices)
        indices[r, :m] = ex.indices
        values[r, :m] = ex.values
        labels[r] = ex.label
        if targets is not None:
            targets[r] = ex.target
    return LocalData(indices, values, labels, targets)


class DataSource(abc.ABC):
    """Where devices' data comes from. Picklable: Ray actors and processes rebuild it."""

    @property
    @abc.abstractmethod
    def num_features(self) -> int: ...

    @abc.abstractmethod
    def local(self, device: int) -> LocalData: ...

    @abc.abstractmethod
    def test_set(self) -> LocalData: ...


@dataclass(frozen=True)
class SyntheticSource(DataSource):
    """Each device is one synthetic user (seed derived from ``seed`` and the device number) with
    ``history_days`` of signals from the objective's own generator (``Objective.synthetic``);
    held-out users (a disjoint seed range) make the test set. ``task_features`` is the task's
    ``[features]``; without it, ``num_buckets`` and ``horizon_days`` (revisit_7d's)."""

    seed: int
    heterogeneity: float = 0.5
    history_days: float = 14.0
    num_buckets: int = 1024
    horizon_days: float = 7.0
    test_users: int = 100
    zipf_s: float = 1.1
    objective: str = "revisit_7d"
    task_features: tuple[tuple[str, Any], ...] | None = None

    @property
    def features(self) -> dict[str, Any]:
        raw = (
            dict(self.task_features)
            if self.task_features is not None
            else {"num_buckets": self.num_buckets, "horizon_days": self.horizon_days}
        )
        return objective(self.objective).configure(raw)

    @property
    def num_features(self) -> int:
        return objective(self.objective).num_features(self.features)

    def _user(self, user_seed: int) -> list[Example]:
        plugin = objective(self.objective)
        features = self.features
        knobs = {"heterogeneity": self.heterogeneity, "zipf_s": self.zipf_s}
        signals = plugin.synthetic(user_seed, features, self.history_days, EPOCH, knobs)
        return plugin.examples(signals, features, EPOCH + self.history_days * _DAY)

    def local(self, device: int) -> LocalData:
        return pack(self._user(self.seed * 1_000_003 + device))

    def test_set(self) -> LocalData:
        base = self.seed * 1_000_003 + 50_000_000
        return pack([ex for u in range(self.test_users) for ex in self._user(base + u)])


class TableSource(DataSource):
    """Devices' data from a table made beforehand (``save_table``, ``dandelion data convert``,
    ``flower_table``; the format: ``tableformat.py``): the benchmark gives every framework the
    same data this way. Device ``d`` of the population is the table's device ``d``. Reading a
    malformed table raises ``TableError`` naming the array at fault."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._table: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._table = None

    @property
    def table(self) -> dict[str, np.ndarray]:
        if self._table is None:
            self._table = load_table(self.path)
        return self._table

    @property
    def num_features(self) -> int:
        return int(self.table["num_features"])

    @property
    def devices(self) -> int:
        return int(self.table["ptr"].shape[0] - 1)

    def local(self, device: int) -> LocalData:
        t = self.table
        a, b = int(t["ptr"][device]), int(t["ptr"][device + 1])
        targets = t["targets"][a:b] if "targets" in t else None
        return LocalData(t["indices"][a:b], t["values"][a:b], t["labels"][a:b], targets)

    def test_set(self) -> LocalData:
        t = self.table
        targets = t.get("test_targets")
        return LocalData(t["test_indices"], t["test_values"], t["test_labels"], targets)


def save_table(
    path: str | Path,
    users: Sequence[LocalData],
    test: LocalData,
    nf: int,
    names: dict[str, Sequence[str]] | None = None,
) -> None:
    """Write devices' data (one LocalData per device, any row widths) and a test set, with a
    regression objective's targets if they have any; ``names``: the optional ``device_ids``,
    ``feature_names`` and ``class_names`` arrays."""
    k = max([u.indices.shape[1] for u in users] + [test.indices.shape[1]])

    def widen(a: np.ndarray, fill: float) -> np.ndarray:
        if a.shape[1] == k:
            return a
        out = np.full((a.shape[0], k), fill, dtype=a.dtype)
        out[:, : a.shape[1]] = a
        return out

    def targets(u: LocalData) -> np.ndarray:
        return u.targets if u.targets is not None else np.zeros(len(u), dtype=np.float64)

    ptr = np.zeros(len(users) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(u) for u in users])
    arrays: dict[str, Any] = {
        "num_features": np.int64(nf),
        "ptr": ptr,
        "indices": np.concatenate([widen(u.indices, -1) for u in users]),
        "values": np.concatenate([widen(u.values, 0.0) for u in users]),
        "labels": np.concatenate([u.labels for u in users]),
        "test_indices": widen(test.indices, -1),
        "test_values": widen(test.values, 0.0),
        "test_labels": test.labels,
    }
    # A regression objective's targets, when there are any (a classifier's table has none).
    if any(u.targets is not None for u in [*users, test]):
        arrays["targets"] = np.concatenate([targets(u) for u in users])
        arrays["test_targets"] = targets(test)
    for name, strings in (names or {}).items():
        arrays[name] = np.asarray([str(s) for s in strings], dtype=np.str_)
    np.savez(path, **arrays)


def load_table(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a table file, checked (raises ``TableError`` naming what is wrong)."""
    return read_table(path)


class DeviceData(Sequence[Example]):
    """What an emulated worker's data provider returns: the device's examples, built on first
    use (as a browser reads its history when it starts training) and kept in a bounded cache.

    ``bool()`` is True without building them: every emulated user has a history. The remote
    backends build the examples where they train and never here.
    """

    __slots__ = ("_cache", "device")

    def __init__(self, device: int, cache: DataCache) -> None:
        self.device = device
        self._cache = cache

    def __bool__(self) -> bool:
        return True

    def materialize(self) -> LocalData:
        return self._cache.get(self.device)

    def __len__(self) -> int:
        return len(self.materialize())

    @overload
    def __getitem__(self, i: int) -> Example: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Example]: ...
    def __getitem__(self, i: int | slice) -> Example | Sequence[Example]:
        return self.materialize()[i]


class DataCache:
    """Least-recently-used LocalData per device, bounded by count (memory stays flat as the
    population grows: only devices that trained recently hold their examples)."""

    def __init__(self, source: DataSource, capacity: int) -> None:
        self.source = source
        self.capacity = max(1, capacity)
        self._items: OrderedDict[int, LocalData] = OrderedDict()
        self.built = 0

    def get(self, device: int) -> LocalData:
        item = self._items.get(device)
        if item is not None:
            self._items.move_to_end(device)
            return item
        item = self.source.local(device)
        self.built += 1
        self._items[device] = item
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item
