"""Per-client rows to a data table: a CSV file (``dandelion data convert``) or a pandas
DataFrame.

One row per example: a client column (who holds the example: each client becomes one
device), a label column (a class) or a target column (a regression's value), and feature
columns (numbers; by default every other column). The CSV is read with the standard library;
pandas is never imported here — a DataFrame is read through its own methods, so pandas is
needed only by whoever has one.

Rules of this file: every bad cell raises ``TableError`` naming the file, line and column;
nothing is written unless the whole table is good (``tablebuild.write_table``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .tablebuild import Rows, TableSummary, build_table, write_table
from .tableformat import TableError

__all__ = ["convert_csv", "convert_dataframe", "table_from_dataframe"]


def convert_csv(
    path: str | Path,
    out: str | Path,
    *,
    client_column: str,
    label_column: str | None = None,
    target_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    test: str | Path | None = None,
    test_share: float = 0.1,
    seed: int = 0,
) -> TableSummary:
    """Write the table of a per-client CSV file (header row first) to ``out``. ``test``: a
    CSV of held-out rows with the same columns (its client column is not read); without it,
    ``test_share`` of the clients are held out. Raises TableError."""
    columns = _columns(client_column, label_column, target_column)
    header, rows = _read_csv(path)
    features = _features(str(path), header, columns, feature_columns)
    train = _rows(str(path), header, rows, client_column, label_column, target_column, features)
    held = None
    if test is not None:
        t_header, t_rows = _read_csv(test)
        missing = [c for c in [*features, *columns[1:]] if c not in t_header]
        if missing:
            raise TableError(f"{test}: no column {missing[0]!r} (the training file has it)")
        held = _rows(str(test), t_header, t_rows, None, label_column, target_column, features)
    arrays = build_table(
        train, test=held, test_share=test_share, seed=seed, feature_names=features, where=str(path)
    )
    return write_table(out, arrays)


def table_from_dataframe(
    frame: Any,
    *,
    client_column: str,
    label_column: str | None = None,
    target_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    test: Any = None,
    test_share: float = 0.1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The table's arrays from a pandas DataFrame (``test``: a DataFrame of held-out rows)."""
    columns = _columns(client_column, label_column, target_column)
    header = [str(c) for c in frame.columns]
    features = _features("DataFrame", header, columns, feature_columns)
    y_col = label_column if label_column is not None else target_column
    assert y_col is not None

    def rows(df: Any, with_clients: bool, where: str) -> Rows:
        for c in [*features, y_col]:
            if c not in df.columns:
                raise TableError(f"{where}: no column {c!r}")
        try:
            x = df[list(features)].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TableError(f"{where}: feature columns must be numbers: {exc}") from None
        y = df[y_col].tolist()
        clients = df[client_column].tolist() if with_clients else None
        if label_column is not None:
            return Rows(x, clients, labels=y)
        return Rows(x, clients, targets=y)

    train = rows(frame, True, "DataFrame")
    held = rows(test, False, "test DataFrame") if test is not None else None
    return build_table(
        train,
        test=held,
        test_share=test_share,
        seed=seed,
        feature_names=features,
        where="DataFrame",
    )


def convert_dataframe(frame: Any, out: str | Path, **options: Any) -> TableSummary:
    """Write the table of a pandas DataFrame to ``out`` (options: ``table_from_dataframe``)."""
    return write_table(out, table_from_dataframe(frame, **options))


def _columns(client: str, label: str | None, target: str | None) -> list[str]:
    if (label is None) == (target is None):
        raise TableError("give a label column (a classifier) or a target column (a regression)")
    return [client, label if label is not None else str(target)]


def _features(
    where: str, header: list[str], columns: list[str], chosen: Sequence[str] | None
) -> list[str]:
    for c in columns:
        if c not in header:
            raise TableError(f"{where}: no column {c!r} (columns: {', '.join(header)})")
    features = list(chosen) if chosen is not None else [c for c in header if c not in columns]
    for c in features:
        if c not in header:
            raise TableError(f"{where}: no feature column {c!r} (columns: {', '.join(header)})")
        if c in columns:
            raise TableError(f"{where}: {c!r} cannot be a feature and the client or label")
    if not features:
        raise TableError(f"{where}: no feature columns")
    return features


def _read_csv(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except OSError as exc:
        raise TableError(f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"{path}: not a CSV file: {exc}") from None
    if not header or not any(header):
        raise TableError(f"{path}: empty: a header row naming the columns comes first")
    if len(set(header)) != len(header):
        raise TableError(f"{path}: line 1: a column is named twice")
    return header, rows


def _rows(
    where: str,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    client_column: str | None,
    label_column: str | None,
    target_column: str | None,
    features: list[str],
) -> Rows:
    if not rows:
        raise TableError(f"{where}: no rows after the header")
    at = {c: i for i, c in enumerate(header)}
    cols = [at[c] for c in features]
    x = np.zeros((len(rows), len(features)), dtype=np.float64)
    y_col = at[label_column if label_column is not None else str(target_column)]
    ys: list[str] = []
    clients: list[str] = []
    for r, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise TableError(
                f"{where}: line {line}: {len(row)} cells, the header has {len(header)}"
            )
        for j, c in enumerate(cols):
            cell = row[c].strip()
            try:
                x[r, j] = float(cell)
            except ValueError:
                raise TableError(
                    f"{where}: line {line}: column {features[j]!r}: a number, not {cell!r}"
                ) from None
        y = row[y_col].strip()
        if y == "":
            raise TableError(f"{where}: line {line}: column {header[y_col]!r} is empty")
        ys.append(y)
        if client_column is not None:
            client = row[at[client_column]].strip()
            if client == "":
                raise TableError(f"{where}: line {line}: column {client_column!r} is empty")
            clients.append(client)
    if not np.isfinite(x).all():
        r, j = (int(v[0]) for v in np.nonzero(~np.isfinite(x)))
        raise TableError(f"{where}: line {rows[r][0]}: column {features[j]!r}: not finite")
    if label_column is not None:
        return Rows(x, clients or None, labels=ys)
    return Rows(x, clients or None, targets=ys)
