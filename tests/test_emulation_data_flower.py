"""Flower Datasets partitions as the devices' data, offline: small in-memory ``datasets``
tables partitioned by ``flwr_datasets`` partitioners, and a FederatedDataset over local
Parquet files; nothing is downloaded."""

from __future__ import annotations

import os

# Flower Datasets reads this once, on import: no usage report leaves the machine.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"

from pathlib import Path

import datasets
import numpy as np
import pytest
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner

from dandelion.emulation import EmulateOptions, PopulationConfig, emulate
from dandelion.emulation.flowerdata import flower_table, save_flower_table
from dandelion.emulation.localdata import TableSource
from dandelion.emulation.tableformat import TableError, read_table


def rows(n: int, seed: int = 0) -> dict[str, list[object]]:
    """``n`` rows: two scalar features, a 2 x 2 "image", a label that x decides."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return {
        "x": x.tolist(),
        "y": rng.normal(size=n).tolist(),
        "img": rng.integers(0, 3, size=(n, 2, 2)).tolist(),
        "label": (x > 0).astype(int).tolist(),
    }


def dense(indices: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((indices.shape[0], width))
    for r, j in zip(*np.nonzero(indices >= 0), strict=True):
        out[r, indices[r, j]] = values[r, j]
    return out


def test_each_partition_of_a_partitioner_becomes_one_device() -> None:
    data = datasets.Dataset.from_dict(rows(200))
    partitioner = IidPartitioner(num_partitions=10)
    partitioner.dataset = data
    table = flower_table(
        partitioner, feature_columns=["x", "y", "img"], label_column="label", seed=3
    )
    # A tenth of the partitions (one) is held out; the image column gives 4 features.
    assert table["ptr"].shape[0] - 1 == 9 and table["test_labels"].shape[0] == 20
    assert int(table["num_features"]) == 6
    names = ["x", "y", "img[0]", "img[1]", "img[2]", "img[3]"]
    assert table["feature_names"].tolist() == names
    ids = table["device_ids"].tolist()
    assert all(i.startswith("partition ") for i in ids) and len(set(ids)) == 9
    x = dense(table["indices"], table["values"], 6)
    for d, name in enumerate(ids):
        part = partitioner.load_partition(int(name.split()[1]))
        got = x[table["ptr"][d] : table["ptr"][d + 1]]
        want = np.column_stack([part["x"], part["y"], np.asarray(part["img"]).reshape(-1, 4)])
        assert np.array_equal(got, want), name
        assert table["labels"][table["ptr"][d] : table["ptr"][d + 1]].tolist() == part["label"]


def test_a_dirichlet_partition_gives_uneven_devices_and_an_emulation_runs(
    tmp_path: Path,
) -> None:
    data = datasets.Dataset.from_dict(rows(600, seed=1))
    partitioner = DirichletPartitioner(
        num_partitions=20, partition_by="label", alpha=1.0, min_partition_size=2, seed=7
    )
    partitioner.dataset = data
    test = datasets.Dataset.from_dict(rows(100, seed=2))
    out = tmp_path / "flower.npz"
    summary = save_flower_table(
        partitioner, out, feature_columns=["x", "y"], label_column="label", test=test
    )
    assert (summary.devices, summary.test_rows, summary.rows) == (20, 100, 600)
    table = read_table(out)
    sizes = np.diff(table["ptr"])
    assert sizes.min() >= 2 and sizes.max() > 2 * sizes.min()  # Dirichlet: uneven
    task = {
        "name": "flower",
        "objective": "page_examples",
        "features": {"num_classes": 2},
        "model": {"kind": "logreg", "num_features": 2},
        "hyper": {"learning_rate": 0.5, "epochs": 2, "batch_size": 8, "clip_norm": 10.0},
        "rounds": {"goal": 10, "min_reports": 8, "deadline_s": 600.0},
    }
    result = emulate(
        PopulationConfig(size=20, rounds=3, seed=5),
        EmulateOptions(progress=False),
        task=task,
        source=TableSource(out),
    )
    summary_run = result.summary()
    assert summary_run["rounds"] == 3
    # x alone decides the label: the held-out rows are learned, not guessed.
    assert summary_run["final_accuracy"] is not None and summary_run["final_accuracy"] > 0.8


def test_a_federated_dataset_from_local_files_and_its_test_split(tmp_path: Path) -> None:
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    datasets.Dataset.from_dict(rows(120, seed=4)).to_parquet(str(train))
    datasets.Dataset.from_dict(rows(30, seed=5)).to_parquet(str(test))
    fds = FederatedDataset(
        dataset="parquet",
        data_files={"train": str(train), "test": str(test)},
        partitioners={"train": 6},
        cache_dir=str(tmp_path / "cache"),
        shuffle=False,
    )
    table = flower_table(fds, feature_columns=["x", "img"], label_column="label")
    assert table["ptr"].shape[0] - 1 == 6  # every partition is a device: the test split holds out
    assert table["labels"].shape[0] == 120 and table["test_labels"].shape[0] == 30
    held = dense(table["test_indices"], table["test_values"], 5)
    assert np.allclose(held[:, 0], rows(30, seed=5)["x"])  # type: ignore[arg-type]


def test_a_list_of_partitions_and_what_is_refused() -> None:
    parts = [datasets.Dataset.from_dict(rows(10, seed=s)) for s in range(4)]
    table = flower_table(parts, feature_columns=["x"], label_column="label", test_share=0.25)
    assert table["ptr"].shape[0] - 1 == 3
    mappings = [{"x": [1.0, 2.0], "t": [0.5, 1.0]}, {"x": [3.0], "t": [1.5]}]
    regression = flower_table(mappings, feature_columns=["x"], target_column="t", test_share=0.5)
    assert regression["targets"].shape[0] + regression["test_targets"].shape[0] == 3
    with pytest.raises(TableError, match=r"partition 0: no column 'z' \(columns: img, label"):
        flower_table(parts, feature_columns=["x", "z"], label_column="label")
    with pytest.raises(TableError, match="give a label column"):
        flower_table(parts, feature_columns=["x"])
    with pytest.raises(TableError, match=r"set partitioner\.dataset first"):
        flower_table(IidPartitioner(num_partitions=3), feature_columns=["x"], label_column="label")
    with pytest.raises(TableError, match="a FederatedDataset, a partitioner or a list"):
        flower_table(42, feature_columns=["x"], label_column="label")
    wide = [*parts[:2], datasets.Dataset.from_dict({**rows(10), "img": [[1, 2, 3]] * 10})]
    with pytest.raises(TableError, match="partition 2: its feature columns have other widths"):
        flower_table(wide, feature_columns=["img"], label_column="label")
