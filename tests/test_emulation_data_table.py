"""The devices' data table (``--data``): a good table reads back; each kind of malformed table
is refused with a message naming the file, the array and the fault; the docs hold the format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dandelion.emulation import PopulationConfig
from dandelion.emulation.localdata import TableSource
from dandelion.emulation.plan import make_plan
from dandelion.emulation.population import PopulationConfigError, default_task
from dandelion.emulation.tableformat import TableError, check_for_task, read_table, spec_table

ROOT = Path(__file__).resolve().parent.parent
Arrays = dict[str, np.ndarray]


def good() -> Arrays:
    """Three devices (2, 0 and 1 rows), two held-out rows, four features, binary labels."""
    return {
        "num_features": np.array(4),
        "ptr": np.array([0, 2, 2, 3]),
        "indices": np.array([[0, 2], [1, -1], [3, 0]]),
        "values": np.array([[1.0, 0.5], [2.0, 0.0], [1.0, 1.0]]),
        "labels": np.array([0, 1, 1]),
        "test_indices": np.array([[2], [3]]),
        "test_values": np.array([[1.0], [0.25]]),
        "test_labels": np.array([1, 0]),
        "device_ids": np.array(["alice", "bob", "carol"]),
    }


def save(tmp_path: Path, arrays: Arrays, name: str = "t.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_a_good_table_reads_back_in_the_emulators_dtypes(tmp_path: Path) -> None:
    table = read_table(save(tmp_path, good()))
    assert table["indices"].dtype == np.int32 and table["values"].dtype == np.float64
    assert table["labels"].dtype == np.int8 and table["ptr"].dtype == np.int64
    assert table["labels"].tolist() == [0, 1, 1]
    source = TableSource(save(tmp_path, good(), "u.npz"))
    assert source.devices == 3 and source.num_features == 4


def _without(name: str) -> Callable[[Arrays], None]:
    def change(a: Arrays) -> None:
        del a[name]

    return change


def _set(name: str, value: object) -> Callable[[Arrays], None]:
    def change(a: Arrays) -> None:
        a[name] = np.asarray(value)

    return change


MALFORMED: list[tuple[str, Callable[[Arrays], None], str]] = [
    ("no ptr", _without("ptr"), "ptr: missing"),
    ("no held-out labels", _without("test_labels"), "test_labels: missing"),
    ("an unknown array", _set("weights", [1.0]), "weights: not an array of a data table"),
    ("float labels", _set("labels", [0.0, 1.0, 1.0]), "labels: must hold ints, not float64"),
    ("string values", _set("values", [["a", "b"]] * 3), "values: must hold floats"),
    ("no features", _set("num_features", 0), "num_features: one integer >= 1"),
    ("ptr not from 0", _set("ptr", [1, 2, 2, 3]), "ptr: ptr[0] must be 0, not 1"),
    ("ptr decreasing", _set("ptr", [0, 2, 1, 3]), "ptr: decreases at device 1"),
    ("ptr past the rows", _set("ptr", [0, 2, 2, 4]), "ptr: ptr[D] = 4, but there are 3 rows"),
    ("no device", _set("ptr", [0]), "ptr: a list of D + 1 row offsets"),
    ("feature too high", _set("indices", [[0, 4], [1, -1], [3, 0]]), "row 0 has feature 4"),
    ("padding below -1", _set("indices", [[0, 2], [-2, -1], [3, 0]]), "row 1 has feature -2"),
    ("values of another shape", _set("values", [[1.0], [2.0], [3.0]]), "values: the shape of"),
    ("a NaN value", _set("values", [[1.0, 0.5], [np.nan, 0], [1, 1]]), "row 1 holds a value"),
    ("a negative label", _set("labels", [0, -1, 1]), "labels: row 1 has a negative label"),
    ("labels of another length", _set("labels", [0, 1]), "indices: shape (rows = 2"),
    ("no held-out rows", _set("test_labels", np.zeros(0, int)), "test_indices: shape (rows = 0"),
    ("targets alone", _set("targets", [1.0, 2.0, 3.0]), "targets and test_targets come together"),
    ("two devices one name", _set("device_ids", ["a", "a", "b"]), "two devices have the same"),
    ("names for too few", _set("device_ids", ["a", "b"]), "device_ids: one name per device"),
    ("feature names short", _set("feature_names", ["x"]), "feature_names: one name per feature"),
]


@pytest.mark.parametrize(("case", "change", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_table_is_refused_naming_what_is_wrong(
    tmp_path: Path, case: str, change: Callable[[Arrays], None], message: str
) -> None:
    arrays = good()
    change(arrays)
    path = save(tmp_path, arrays)
    with pytest.raises(TableError) as caught:
        read_table(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_empty_held_out_rows_of_the_right_shape_are_refused_too(tmp_path: Path) -> None:
    arrays = good()
    arrays["test_indices"] = np.zeros((0, 1), dtype=int)
    arrays["test_values"] = np.zeros((0, 1))
    arrays["test_labels"] = np.zeros(0, dtype=int)
    with pytest.raises(TableError, match="test_labels: no held-out rows"):
        read_table(save(tmp_path, arrays))


def test_files_that_are_not_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no such file"):
        read_table(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("device,label\n1,0\n")
    with pytest.raises(TableError, match=r"text.npz: not a data table \(.npz of plain arrays\)"):
        read_table(text)
    single = tmp_path / "one.npy"
    np.save(single, np.arange(3))
    with pytest.raises(TableError, match=r"one.npy: a \.npz file of named arrays"):
        read_table(single)
    pickled = tmp_path / "pickled.npz"
    arrays: dict[str, np.ndarray] = {**good(), "labels": np.array([0, 1, {}], dtype=object)}
    np.savez(pickled, **arrays)  # type: ignore[arg-type]
    with pytest.raises(
        TableError, match=r"pickled\.npz: not a data table.*Object arrays cannot be loaded"
    ):
        read_table(pickled)


def test_a_table_must_fit_the_task(tmp_path: Path) -> None:
    table = read_table(save(tmp_path, {**good(), "labels": np.array([0, 2, 1])}))
    with pytest.raises(TableError, match=r"labels: class 2, but the task's model has num_cl"):
        check_for_task(table, "t.npz", num_classes=2, regression=False)
    check_for_task(table, "t.npz", num_classes=3, regression=False)
    with pytest.raises(TableError, match="targets: missing, and the task's model is a regr"):
        check_for_task(table, "t.npz", num_classes=1, regression=True)


def test_the_plan_refuses_a_population_larger_than_the_table(tmp_path: Path) -> None:
    source = TableSource(save(tmp_path, good()))
    task = default_task(1, 1)
    task.update(objective="page_examples", features={"num_classes": 2})
    task["model"] = {"kind": "logreg", "num_features": 4}
    assert make_plan(PopulationConfig(size=3), task=task, source=source).size == 3
    with pytest.raises(PopulationConfigError, match=r"holds 3 \(use --workers 3 or fewer\)"):
        make_plan(PopulationConfig(size=4), task=task, source=source)


def test_a_malformed_table_loses_nothing_and_emulate_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dandelion.cli import main

    path = save(tmp_path, {**good(), "ptr": np.array([0, 2, 1, 3])})
    before = path.read_bytes()
    assert main(["emulate", "--data", str(path), "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert f"dandelion emulate: {path}: ptr: decreases at device 1" in err
    assert path.read_bytes() == before


def test_the_docs_hold_the_current_format_table() -> None:
    page = (ROOT / "docs" / "emulation.md").read_text()
    assert spec_table() in page, (
        "paste spec_table() of dandelion.emulation.tableformat into the page"
    )
