"""Making a data table (``tableformat.py``) from per-client rows: the one step the CSV and
DataFrame converter (``convert.py``) and the Flower Datasets loader (``flowerdata.py``) share.

Rows come as a dense float matrix with each row's client and label (or regression target).
Each distinct client becomes one device, in the order clients first appear; a share of the
clients (chosen with a seeded ``random.Random``) is held out as the test set, unless test rows
are given. Features equal to 0 are left out of a row (the table is sparse); a label that is an
integer (``3``, ``"3"``, ``3.0``) is its class index, and other labels (``"spam"``) are
numbered in sorted order, with their names in ``class_names``.

Rules of this file: numpy only; no I/O but writing the finished table, whole or not at all.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .tableformat import TableError, check_table

__all__ = ["Rows", "TableSummary", "build_table", "write_table"]


@dataclass(frozen=True)
class Rows:
    """Examples to turn into a table: ``features`` (n, F), and per row its ``clients`` entry
    and its ``labels`` entry (a class) or ``targets`` entry (a regression's value)."""

    features: np.ndarray
    clients: Sequence[Any] | None
    labels: Sequence[Any] | None = None
    targets: Sequence[Any] | None = None


@dataclass(frozen=True)
class TableSummary:
    """What a finished table holds, and the task it fits (``task_toml``)."""

    path: str
    devices: int
    rows: int
    test_rows: int
    num_features: int
    num_classes: int | None  # None: a regression table

    def task_toml(self, name: str = "my-data") -> str:
        """A task file for this table (classification): the ``page_examples`` objective, whose
        width is the model's ``num_features``."""
        if self.num_classes is None:
            raise TableError(
                f"{self.path}: a regression table needs a regression objective of your own "
                f"with num_features = {self.num_features} (docs/tasks.md)"
            )
        kind = "logreg" if self.num_classes == 2 else "softmax"
        return (
            f'name = "{name}"\nobjective = "page_examples"\n\n[features]\n'
            f"num_classes = {self.num_classes}\n\n[model]\n"
            f'kind = "{kind}"\nnum_features = {self.num_features}\n'
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "devices": self.devices,
            "rows": self.rows,
            "test_rows": self.test_rows,
            "num_features": self.num_features,
            "num_classes": self.num_classes,
        }


def build_table(
    train: Rows,
    *,
    test: Rows | None = None,
    test_share: float = 0.1,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    where: str = "rows",
) -> dict[str, np.ndarray]:
    """The arrays of a table (checked by ``check_table``). Without ``test``, ``test_share`` of
    the clients (at least one, never all) are held out. Raises TableError."""
    x = _matrix(train.features, where)
    regression = train.targets is not None
    if (train.labels is None) == (train.targets is None):
        raise TableError(f"{where}: give labels (a classifier) or targets (a regression)")
    if train.clients is None or len(train.clients) != x.shape[0]:
        raise TableError(f"{where}: one client per row")
    ids = [str(c) for c in train.clients]
    order = list(dict.fromkeys(ids))  # clients in the order they first appear
    if test is None:
        if not 0.0 < test_share < 1.0:
            raise TableError(f"{where}: test_share: between 0 and 1, not {test_share!r}")
        if len(order) < 2:
            raise TableError(f"{where}: one client only: give test rows to hold out")
        m = min(len(order) - 1, max(1, round(test_share * len(order))))
        held = set(random.Random(seed).sample(order, m))
    else:
        held = set()
    device_of = {c: d for d, c in enumerate(c for c in order if c not in held)}
    raw_y = train.targets if regression else train.labels
    assert raw_y is not None
    if len(raw_y) != x.shape[0]:
        raise TableError(f"{where}: one {'target' if regression else 'label'} per row")
    if test is not None:
        tx = _matrix(test.features, f"{where} (test)")
        if tx.shape[1] != x.shape[1]:
            raise TableError(f"{where}: test rows have {tx.shape[1]} features, not {x.shape[1]}")
        t_raw = test.targets if regression else test.labels
        if t_raw is None or len(t_raw) != tx.shape[0]:
            what = "target" if regression else "label"
            raise TableError(f"{where} (test): one {what} per row")
        all_y = [*raw_y, *t_raw]
    else:
        all_y = list(raw_y)
    if regression:
        y_all = _targets(all_y, where)
        labels_all = np.zeros(len(all_y), dtype=np.int64)
        class_names: list[str] | None = None
    else:
        labels_all, class_names = _classes(all_y, where)
    n = x.shape[0]
    device = np.array([device_of.get(c, -1) for c in ids], dtype=np.int64)
    train_rows = np.nonzero(device >= 0)[0]
    train_rows = train_rows[np.argsort(device[train_rows], kind="stable")]
    if test is None:
        test_rows = np.nonzero(device < 0)[0]
        tx, t_labels = x[test_rows], labels_all[test_rows]
        t_targets = y_all[test_rows] if regression else None
    else:
        t_labels = labels_all[n:]
        t_targets = y_all[n:] if regression else None
    counts = np.bincount(device[train_rows], minlength=len(device_of))
    ptr = np.zeros(len(device_of) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts)
    indices, values = _sparse(x[train_rows])
    t_indices, t_values = _sparse(tx)
    arrays: dict[str, np.ndarray] = {
        "num_features": np.array(x.shape[1], dtype=np.int64),
        "ptr": ptr,
        "indices": indices,
        "values": values,
        "labels": labels_all[train_rows],
        "test_indices": t_indices,
        "test_values": t_values,
        "test_labels": t_labels,
        "device_ids": np.asarray(list(device_of), dtype=np.str_),
    }
    if regression:
        assert t_targets is not None
        arrays["targets"] = y_all[train_rows]
        arrays["test_targets"] = t_targets
    if feature_names is not None:
        if len(feature_names) != x.shape[1]:
            raise TableError(f"{where}: {len(feature_names)} feature names for {x.shape[1]}")
        arrays["feature_names"] = np.asarray([str(f) for f in feature_names], dtype=np.str_)
    if class_names is not None:
        arrays["class_names"] = np.asarray(class_names, dtype=np.str_)
    return check_table(arrays, where)


def write_table(path: str | Path, arrays: dict[str, np.ndarray]) -> TableSummary:
    """Write a table to ``path`` exactly (no suffix added): into a temporary file first, so a
    failure leaves no half-written table."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    labels = np.concatenate([arrays["labels"], arrays["test_labels"]])
    return TableSummary(
        path=str(target),
        devices=int(arrays["ptr"].shape[0] - 1),
        rows=int(arrays["labels"].shape[0]),
        test_rows=int(arrays["test_labels"].shape[0]),
        num_features=int(arrays["num_features"]),
        num_classes=None
        if "targets" in arrays
        else max(
            2, len(arrays["class_names"]) if "class_names" in arrays else int(labels.max()) + 1
        ),
    )


def _matrix(features: Any, where: str) -> np.ndarray:
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TableError(f"{where}: features must be numbers: {exc}") from None
    if x.ndim != 2 or x.shape[1] < 1:
        raise TableError(f"{where}: features: a matrix of rows x features, not shape {x.shape}")
    if x.shape[0] == 0:
        raise TableError(f"{where}: no rows")
    if not np.isfinite(x).all():
        r, j = (int(v[0]) for v in np.nonzero(~np.isfinite(x)))
        raise TableError(f"{where}: row {r}, feature {j}: not a finite number")
    return x


def _targets(values: Sequence[Any], where: str) -> np.ndarray:
    try:
        y = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TableError(f"{where}: targets must be numbers: {exc}") from None
    if not np.isfinite(y).all():
        raise TableError(f"{where}: row {int(np.argmin(np.isfinite(y)))}: target not finite")
    return y


def _classes(values: Sequence[Any], where: str) -> tuple[np.ndarray, list[str] | None]:
    """Class indices, and the class names when the labels are not integers already."""
    as_int: list[int] = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            break
        if not f.is_integer():
            break
        as_int.append(int(f))
    if len(as_int) == len(values):
        y = np.asarray(as_int, dtype=np.int64)
        if len(y) and int(y.min()) < 0:
            raise TableError(f"{where}: row {int(np.argmin(y))}: label {int(y.min())} < 0")
        return y, None
    names = sorted({str(v) for v in values})
    number = {name: i for i, name in enumerate(names)}
    return np.asarray([number[str(v)] for v in values], dtype=np.int64), names


def _sparse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the non-zero features of each row, padded with -1 / 0."""
    mask = x != 0
    k = max(1, int(mask.sum(axis=1).max()) if x.shape[0] else 1)
    order = np.argsort(~mask, axis=1, kind="stable")[:, :k]
    keep = np.take_along_axis(mask, order, axis=1)
    indices = np.where(keep, order, -1).astype(np.int32)
    values = np.where(keep, np.take_along_axis(x, order, axis=1), 0.0)
    return indices, values
