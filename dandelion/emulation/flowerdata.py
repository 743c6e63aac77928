"""Flower Datasets partitions as the devices' data: each partition is one device.

``flower_table`` takes a ``flwr_datasets.FederatedDataset`` (its partitioned split, and its
test split as the held-out rows when it has one), a partitioner whose ``dataset`` is assigned
(``IidPartitioner``, ``DirichletPartitioner``, … — the way Flower Datasets partitions a local
``datasets.Dataset``), or a plain sequence of partitions (Hugging Face ``Dataset`` objects or
mappings of column to values). Feature columns are numbers, or fixed-length arrays of numbers
(flattened: a 28 x 28 image column gives 784 features, ``name[0]`` … ``name[783]``).

flwr-datasets is not imported here (nor is ``datasets``): the objects passed in are read
through their own methods (``load_partition``, ``num_partitions``, ``load_split``,
``with_format``), so the extra (``pip install 'dandelion-fl[data]'``) is needed only by whoever
has a Flower dataset. Reading a partition may load or download the dataset, as Flower Datasets
does; nothing here goes to the network by itself.

Rules of this file: problems raise ``TableError`` naming the partition and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .tablebuild import Rows, TableSummary, build_table, write_table
from .tableformat import TableError

__all__ = ["flower_table", "save_flower_table"]


def flower_table(
    data: Any,
    *,
    feature_columns: Sequence[str],
    label_column: str | None = None,
    target_column: str | None = None,
    split: str | None = None,
    test_split: str | None = "test",
    test: Any = None,
    test_share: float = 0.1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The table's arrays, one device per partition. Held-out rows: ``test`` (a dataset or
    mapping) if given, else a FederatedDataset's ``test_split`` if it has one, else
    ``test_share`` of the partitions (whole partitions: held-out users, as in synthetic runs).
    ``split``: the FederatedDataset's partitioned split when it has more than one."""
    if (label_column is None) == (target_column is None):
        raise TableError("give a label column (a classifier) or a target column (a regression)")
    if not feature_columns:
        raise TableError("feature_columns: at least one column")
    y_col = str(label_column if label_column is not None else target_column)
    partitions = _partitions(data, split)
    parts: list[tuple[np.ndarray, list[Any]]] = []
    names: list[str] | None = None
    for i, partition in enumerate(partitions):
        x, y, made = _read(partition, feature_columns, y_col, f"partition {i}")
        if names is not None and made != names:
            raise TableError(f"partition {i}: its feature columns have other widths than 0's")
        names = made
        parts.append((x, y))
    if not parts:
        raise TableError("no partitions")
    if test is None and test_split is not None and hasattr(data, "load_split"):
        try:
            test = data.load_split(test_split)
        except ValueError:  # the dataset has no such split: hold out partitions instead
            test = None
    x = np.concatenate([p[0] for p in parts])
    ys = [v for p in parts for v in p[1]]
    clients = [i for i, p in enumerate(parts) for _ in range(len(p[1]))]
    labelled = label_column is not None
    train = Rows(x, clients, labels=ys) if labelled else Rows(x, clients, targets=ys)
    held = None
    if test is not None:
        tx, ty, t_names = _read(test, feature_columns, y_col, "test split")
        if t_names != names:
            raise TableError("test split: its feature columns have other widths than the train's")
        held = Rows(tx, None, labels=ty) if labelled else Rows(tx, None, targets=ty)
    table = build_table(
        train, test=held, test_share=test_share, seed=seed, feature_names=names, where="flower"
    )
    table["device_ids"] = np.asarray(
        [f"partition {c}" for c in table["device_ids"].tolist()], dtype=np.str_
    )
    return table


def save_flower_table(data: Any, out: str | Path, **options: Any) -> TableSummary:
    """Write ``flower_table(data, **options)`` to ``out`` (for ``dandelion emulate --data``)."""
    return write_table(out, flower_table(data, **options))


def _partitions(data: Any, split: str | None) -> list[Any]:
    if hasattr(data, "partitioners") and hasattr(data, "load_partition"):  # FederatedDataset
        partitioners = data.partitioners  # loads the dataset, as Flower Datasets does
        if split is None:
            if len(partitioners) != 1:
                raise TableError(f"split: one of {sorted(partitioners)} (it has several)")
            split = next(iter(partitioners))
        if split not in partitioners:
            raise TableError(f"split: {split!r} is not partitioned (only {sorted(partitioners)})")
        count = partitioners[split].num_partitions
        return [data.load_partition(i, split) for i in range(count)]
    if hasattr(data, "num_partitions") and hasattr(data, "load_partition"):  # a Partitioner
        if hasattr(data, "is_dataset_assigned") and not data.is_dataset_assigned():
            raise TableError("the partitioner has no dataset: set partitioner.dataset first")
        return [data.load_partition(i) for i in range(data.num_partitions)]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return list(data)
    raise TableError(
        f"a FederatedDataset, a partitioner or a list of partitions, not {type(data).__name__}"
    )


def _read(
    partition: Any, feature_columns: Sequence[str], y_col: str, where: str
) -> tuple[np.ndarray, list[Any], list[str]]:
    if hasattr(partition, "with_format"):
        partition = partition.with_format("numpy")  # a datasets.Dataset: columns as arrays
    names = set(partition.column_names) if hasattr(partition, "column_names") else set(partition)
    for c in [*feature_columns, y_col]:
        if c not in names:
            raise TableError(f"{where}: no column {c!r} (columns: {', '.join(sorted(names))})")
    y = np.asarray(partition[y_col])
    if y.ndim != 1:
        raise TableError(f"{where}: {y_col}: one value per row, not shape {y.shape}")
    blocks: list[np.ndarray] = []
    made: list[str] = []
    for c in feature_columns:
        try:
            col = np.asarray(partition[c], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TableError(f"{where}: {c}: numbers or fixed-length arrays: {exc}") from None
        if col.shape[:1] != y.shape:
            raise TableError(f"{where}: {c}: {col.shape[0]} rows, {y_col} has {y.shape[0]}")
        scalar = col.ndim == 1
        col = col.reshape(len(y), -1)
        blocks.append(col)
        made += [c] if scalar else [f"{c}[{j}]" for j in range(col.shape[1])]
    return np.hstack(blocks), y.tolist(), made
