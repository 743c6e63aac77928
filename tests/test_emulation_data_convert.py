"""Per-client CSV files and pandas DataFrames to data tables, and ``dandelion data`` on real
files: what goes in comes out, bad cells are named, and nothing half-made is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dandelion.cli import main
from dandelion.emulation.convert import convert_csv, convert_dataframe, table_from_dataframe
from dandelion.emulation.tableformat import TableError, read_table

ROOT = Path(__file__).resolve().parent.parent
HEADER = "client,a,b,c,label\n"


def dense(indices: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((indices.shape[0], width))
    for r, j in zip(*np.nonzero(indices >= 0), strict=True):
        out[r, indices[r, j]] = values[r, j]
    return out


def clients_csv(tmp_path: Path, clients: int = 10, rows: int = 3) -> Path:
    """``clients`` clients of ``rows`` rows each; row i of client k has a = k, b = i, c = k*i
    (zeros included, so the table really is sparse) and a string label."""
    lines = [HEADER]
    lines += [
        f"u{k:02d},{k},{i},{k * i / 2},{'spam' if (k + i) % 2 else 'ham'}\n"
        for k in range(clients)
        for i in range(rows)
    ]
    path = tmp_path / "clients.csv"
    path.write_text("".join(lines))
    return path


def test_a_csv_becomes_one_device_per_client_with_its_rows(tmp_path: Path) -> None:
    summary = convert_csv(
        clients_csv(tmp_path), tmp_path / "t.npz", client_column="client", label_column="label"
    )
    table = read_table(tmp_path / "t.npz")
    assert (summary.devices, summary.rows, summary.test_rows) == (9, 27, 3)  # 10% of clients
    assert summary.num_features == 3 and summary.num_classes == 2
    assert table["class_names"].tolist() == ["ham", "spam"]  # numbered in sorted order
    assert table["feature_names"].tolist() == ["a", "b", "c"]
    ids = table["device_ids"].tolist()
    assert len(ids) == 9 and ids == sorted(ids)  # the order clients first appear
    x = dense(table["indices"], table["values"], 3)
    for d, client in enumerate(ids):
        k = int(client[1:])
        rows = x[table["ptr"][d] : table["ptr"][d + 1]]
        assert rows.tolist() == [[k, i, k * i / 2] for i in range(3)]
        labels = table["labels"][table["ptr"][d] : table["ptr"][d + 1]].tolist()
        assert labels == [(k + i) % 2 for i in range(3)]  # spam = 1
    # The held-out client's rows are the test set, and it is no device.
    (held,) = {f"u{k:02d}" for k in range(10)} - set(ids)
    k = int(held[1:])
    assert dense(table["test_indices"], table["test_values"], 3)[:, 0].tolist() == [k] * 3


def test_the_seed_chooses_the_held_out_clients(tmp_path: Path) -> None:
    csv_path = clients_csv(tmp_path, clients=20)
    kept = []
    for seed in (0, 0, 1):
        out = tmp_path / f"s{seed}.npz"
        convert_csv(csv_path, out, client_column="client", label_column="label", seed=seed)
        kept.append(read_table(out)["device_ids"].tolist())
    assert kept[0] == kept[1] != kept[2]


def test_a_test_file_and_a_regression_target(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("who,x,y\nA,1,0.5\nA,2,1.0\nB,3,1.5\n")
    test = tmp_path / "test.csv"
    test.write_text("who,x,y\nZ,4,2.0\n")
    summary = convert_csv(
        train, tmp_path / "r.npz", client_column="who", target_column="y", test=test
    )
    table = read_table(tmp_path / "r.npz")
    assert summary.num_classes is None and (summary.devices, summary.test_rows) == (2, 1)
    assert table["targets"].tolist() == [0.5, 1.0, 1.5]
    assert table["test_targets"].tolist() == [2.0]
    with pytest.raises(TableError, match="regression table needs a regression objective"):
        summary.task_toml()


@pytest.mark.parametrize(
    ("body", "options", "message"),
    [
        ("u1,1,2,x,ham\n", {}, "line 3: column 'c': a number, not 'x'"),
        ("u1,1,2\n", {}, "line 3: 3 cells, the header has 5"),
        ("u1,1,2,inf,ham\n", {}, "line 3: column 'c': not finite"),
        ("u1,1,2,3,\n", {}, "line 3: column 'label' is empty"),
        (",1,2,3,ham\n", {}, "line 3: column 'client' is empty"),
        ("", {"label_column": "kind"}, "no column 'kind' (columns: client, a, b, c, label)"),
        ("", {"feature_columns": ["a", "z"]}, "no feature column 'z'"),
        ("", {"feature_columns": ["a", "label"]}, "'label' cannot be a feature"),
        ("", {"target_column": "a"}, "give a label column (a classifier) or a target column"),
        ("", {"test_share": 1.0}, "test_share: between 0 and 1"),
    ],
)
def test_bad_input_names_the_line_and_column_and_writes_nothing(
    tmp_path: Path, body: str, options: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "u0,1,2,3,ham\n" + body + "u2,0,1,1,spam\n")
    out = tmp_path / "out.npz"
    out.write_bytes(b"an earlier table")
    kwargs: dict[str, object] = {"client_column": "client", "label_column": "label", **options}
    with pytest.raises(TableError) as caught:
        convert_csv(path, out, **kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert out.read_bytes() == b"an earlier table"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.npz"]


def test_files_that_are_not_per_client_csvs(tmp_path: Path) -> None:
    out = tmp_path / "out.npz"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TableError, match="empty: a header row naming the columns comes first"):
        convert_csv(empty, out, client_column="client", label_column="label")
    header_only = tmp_path / "header.csv"
    header_only.write_text(HEADER)
    with pytest.raises(TableError, match="no rows after the header"):
        convert_csv(header_only, out, client_column="client", label_column="label")
    twice = tmp_path / "twice.csv"
    twice.write_text("client,a,a,label\nu,1,2,0\n")
    with pytest.raises(TableError, match="line 1: a column is named twice"):
        convert_csv(twice, out, client_column="client", label_column="label")
    one = tmp_path / "one.csv"
    one.write_text(HEADER + "u0,1,2,3,ham\n")
    with pytest.raises(TableError, match="one client only: give test rows to hold out"):
        convert_csv(one, out, client_column="client", label_column="label")
    with pytest.raises(TableError, match=r"absent\.csv: No such file"):
        convert_csv(tmp_path / "absent.csv", out, client_column="client", label_column="label")
    assert not out.exists()


def test_a_dataframe_gives_the_csvs_table(tmp_path: Path) -> None:
    path = clients_csv(tmp_path)
    convert_csv(path, tmp_path / "csv.npz", client_column="client", label_column="label")
    frame = pd.read_csv(path)
    from_frame = table_from_dataframe(frame, client_column="client", label_column="label")
    from_csv = read_table(tmp_path / "csv.npz")
    assert sorted(from_frame) == sorted(from_csv)
    for name, array in from_csv.items():
        assert np.array_equal(from_frame[name], array), name
    summary = convert_dataframe(
        frame, tmp_path / "df.npz", client_column="client", label_column="label"
    )
    assert summary.devices == 9
    with pytest.raises(TableError, match="DataFrame: no column 'kind'"):
        table_from_dataframe(frame, client_column="client", label_column="kind")
    frame["a"] = frame["a"].astype(str) + "x"
    with pytest.raises(TableError, match="feature columns must be numbers"):
        table_from_dataframe(frame, client_column="client", label_column="label")


def test_dandelion_data_convert_check_and_an_emulation_on_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, task = tmp_path / "clients.npz", tmp_path / "task.toml"
    args = ["data", "convert", str(ROOT / "examples" / "clients.csv"), "-o", str(out)]
    args += ["--client-column", "client", "--label-column", "label", "--task-out", str(task)]
    assert main([*args, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["devices"] >= 40 and made["num_features"] == 6 and made["num_classes"] == 2
    assert "num_features = 6" in task.read_text() and 'kind = "logreg"' in task.read_text()
    assert main(["data", "check", str(out), "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["devices"] == made["devices"] and checked["rows"] == made["rows"]
    assert checked["max_label"] == 1 and not checked["regression"]
    assert main(["data", "check", str(out)]) == 0
    assert f"{out}: {made['devices']} devices" in capsys.readouterr().out
    run = ["emulate", "--data", str(out), "--task", str(task), "--rounds", "2", "--cohort", "5"]
    assert main([*run, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["population"] == made["devices"]  # the table says how many devices
    assert summary["rounds"] == 2 and summary["final_accuracy"] is not None


def test_dandelion_data_refuses_bad_files_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "u0,1,two,3,ham\n")
    out = tmp_path / "t.npz"
    args = ["data", "convert", str(bad), "-o", str(out), "--client-column", "client"]
    assert main([*args, "--label-column", "label"]) == 2
    err = capsys.readouterr().err
    assert err == f"dandelion data convert: {bad}: line 2: column 'b': a number, not 'two'\n"
    assert not out.exists()
    out.write_bytes(b"not a table")
    assert main(["data", "check", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"dandelion data check: {out}: ")
