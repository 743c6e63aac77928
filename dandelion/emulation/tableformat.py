"""The devices' data table (``dandelion emulate --data TABLE.npz``): what it holds, checked.

A table is a numpy ``.npz`` file (``np.savez`` or ``np.savez_compressed``; no pickled objects)
of the arrays in :data:`ARRAYS`. Rows are examples; the rows of device ``d`` are
``ptr[d]:ptr[d+1]``; an example is sparse: row ``r`` has the features ``indices[r, j]`` with
the values ``values[r, j]`` for every ``j`` whose index is not ``-1`` (padding). The held-out
rows (``test_*``) score every round's model. ``docs/emulation.md`` shows this table, made by
``python -m dandelion.emulation.tableformat``; a test keeps the two in step.

Rules of this file: numpy only, no I/O but reading the one file; every problem raises
:class:`TableError` naming the file, the array and what is wrong.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .population import PopulationConfigError

__all__ = ["ARRAYS", "TableError", "check_for_task", "check_table", "read_table", "spec_table"]


class TableError(PopulationConfigError):
    """A data table that cannot be used: the message names the file, the array and the fault."""


@dataclass(frozen=True, slots=True)
class ArraySpec:
    name: str
    kind: str  # "int", "float" or "str"
    shape: str  # in words, for the docs
    required: bool
    meaning: str


#: Every array a table may hold. n: training rows; m: held-out rows; D: devices; k, k': the
#: widest example (padding included); F: ``num_features``.
ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("num_features", "int", "() scalar", True, "F, the input width: >= 1"),
    ArraySpec(
        "ptr",
        "int",
        "(D + 1,)",
        True,
        "device d's rows are ptr[d]:ptr[d+1]; ptr[0] = 0, never decreasing, ptr[D] = n; D >= 1",
    ),
    ArraySpec("indices", "int", "(n, k)", True, "feature numbers in [0, F), or -1 for no feature"),
    ArraySpec("values", "float", "(n, k)", True, "the value of each feature (finite)"),
    ArraySpec(
        "labels",
        "int",
        "(n,)",
        True,
        "class index >= 0 (below the task's num_classes); 0 for a regression task",
    ),
    ArraySpec(
        "targets", "float", "(n,)", False, "a regression task's value (finite); with test_targets"
    ),
    ArraySpec("test_indices", "int", "(m, k')", True, "the held-out rows, as indices; m >= 1"),
    ArraySpec("test_values", "float", "(m, k')", True, "as values"),
    ArraySpec("test_labels", "int", "(m,)", True, "as labels"),
    ArraySpec("test_targets", "float", "(m,)", False, "as targets; with targets"),
    ArraySpec(
        "device_ids", "str", "(D,)", False, "each device's name where the data came from; unique"
    ),
    ArraySpec("feature_names", "str", "(F,)", False, "each feature's name"),
    ArraySpec("class_names", "str", "(C,)", False, "each class's name, by class index"),
)
_BY_NAME = {a.name: a for a in ARRAYS}
_KINDS = {"int": "iu", "float": "fiu", "str": "U"}
_Fail = Callable[[str, str], TableError]


def spec_table() -> str:
    """The Markdown table of :data:`ARRAYS` that ``docs/emulation.md`` holds."""
    lines = ["| array | dtype | shape | required | meaning |", "|---|---|---|---|---|"]
    for a in ARRAYS:
        dtype = {"int": "integer", "float": "float (or integer)", "str": "unicode string"}[a.kind]
        lines.append(
            f"| `{a.name}` | {dtype} | {a.shape} | {'yes' if a.required else 'no'} | {a.meaning} |"
        )
    return "\n".join(lines)


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a table file; the arrays come back in the emulator's dtypes (indices
    int32, values and targets float64, labels int8, or int16 past 127 classes, ptr int64)."""
    where = str(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy file: one array, no names
            raise TableError(f"{where}: a .npz file of named arrays, not a single array")
        with data:
            arrays = {name: data[name] for name in data.files}
    except TableError:
        raise
    except FileNotFoundError:
        raise TableError(f"{where}: no such file") from None
    except ValueError as exc:  # a pickled object array, or not a numpy file at all
        raise TableError(f"{where}: not a data table (.npz of plain arrays): {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise TableError(f"{where}: cannot read it as a .npz file: {exc}") from None
    return check_table(arrays, where)


def check_table(arrays: dict[str, np.ndarray], where: str = "table") -> dict[str, np.ndarray]:
    """The arrays of a table, checked against :data:`ARRAYS` and converted to the emulator's
    dtypes. Raises TableError naming ``where``, the array and the problem."""

    def fail(name: str, problem: str) -> TableError:
        return TableError(f"{where}: {name}: {problem}")

    unknown = sorted(set(arrays) - set(_BY_NAME))
    if unknown:
        raise fail(unknown[0], f"not an array of a data table (known: {', '.join(_BY_NAME)})")
    for spec in ARRAYS:
        if spec.required and spec.name not in arrays:
            raise fail(spec.name, f"missing ({spec.meaning})")
        if spec.name in arrays and arrays[spec.name].dtype.kind not in _KINDS[spec.kind]:
            raise fail(spec.name, f"must hold {spec.kind}s, not {arrays[spec.name].dtype}")
    if ("targets" in arrays) != ("test_targets" in arrays):
        raise fail("targets", "targets and test_targets come together, or neither")
    nf_raw = arrays["num_features"]
    if nf_raw.shape not in ((), (1,)) or int(nf_raw.reshape(-1)[0]) < 1:
        raise fail("num_features", f"one integer >= 1, not {nf_raw.tolist()!r}")
    nf = int(nf_raw.reshape(-1)[0])
    ptr = arrays["ptr"]
    if ptr.ndim != 1 or ptr.shape[0] < 2:
        raise fail("ptr", f"a list of D + 1 row offsets for D >= 1 devices, not shape {ptr.shape}")
    out: dict[str, np.ndarray] = {"num_features": np.array(nf, dtype=np.int64)}
    rows = _check_rows(arrays, "", nf, fail, out)
    if int(ptr[0]) != 0:
        raise fail("ptr", f"ptr[0] must be 0, not {int(ptr[0])}")
    steps = np.diff(ptr)
    if (steps < 0).any():
        d = int(np.argmax(steps < 0))
        raise fail("ptr", f"decreases at device {d} (ptr[{d}] > ptr[{d + 1}])")
    if int(ptr[-1]) != rows:
        raise fail("ptr", f"ptr[D] = {int(ptr[-1])}, but there are {rows} rows (labels)")
    out["ptr"] = ptr.astype(np.int64)
    if _check_rows(arrays, "test_", nf, fail, out) == 0:
        raise fail("test_labels", "no held-out rows: each round's model is scored on them")
    devices = ptr.shape[0] - 1
    for name, length in (("device_ids", devices), ("feature_names", nf), ("class_names", None)):
        if name not in arrays:
            continue
        names = arrays[name]
        if names.ndim != 1 or (length is not None and names.shape[0] != length):
            raise fail(name, f"one name per {'device' if length == devices else 'feature'}")
        if name == "device_ids" and len(set(names.tolist())) != devices:
            raise fail(name, "two devices have the same name")
        out[name] = names
    return out


def check_for_task(
    table: dict[str, np.ndarray], where: str, *, num_classes: int, regression: bool
) -> None:
    """Raise TableError when the task's model cannot learn from the table: a label at or past
    the classifier's ``num_classes``, or a regression task and a table without targets."""
    if regression:
        if "targets" not in table:
            raise TableError(
                f"{where}: targets: missing, and the task's model is a regression "
                "(a table for it holds targets and test_targets)"
            )
        return
    for name in ("labels", "test_labels"):
        labels = table[name]
        if len(labels) and int(labels.max()) >= num_classes:
            raise TableError(
                f"{where}: {name}: class {int(labels.max())}, but the task's model has "
                f"num_classes = {num_classes} (classes 0 .. {num_classes - 1})"
            )


def _check_rows(
    arrays: dict[str, np.ndarray], prefix: str, nf: int, fail: _Fail, out: dict[str, np.ndarray]
) -> int:
    """Check one set of rows (training: prefix "", held-out: "test_") into ``out``; their
    number."""
    indices, values = arrays[f"{prefix}indices"], arrays[f"{prefix}values"]
    labels = arrays[f"{prefix}labels"]
    if labels.ndim != 1:
        raise fail(f"{prefix}labels", f"one label per row, not shape {labels.shape}")
    n = labels.shape[0]
    if indices.ndim != 2 or indices.shape[0] != n or indices.shape[1] < 1:
        raise fail(f"{prefix}indices", f"shape (rows = {n}, k >= 1), not {indices.shape}")
    if values.shape != indices.shape:
        raise fail(
            f"{prefix}values", f"the shape of {prefix}indices, {indices.shape}, not {values.shape}"
        )
    bad = (indices < -1) | (indices >= nf)
    if bad.any():
        r, j = (int(x[0]) for x in np.nonzero(bad))
        raise fail(
            f"{prefix}indices",
            f"row {r} has feature {int(indices[r, j])}: features are 0 .. {nf - 1} "
            "(num_features), -1 for padding",
        )
    if not np.isfinite(values).all():
        r = int(np.nonzero(~np.isfinite(values))[0][0])
        raise fail(f"{prefix}values", f"row {r} holds a value that is not finite")
    if n and int(labels.min()) < 0:
        raise fail(f"{prefix}labels", f"row {int(np.argmin(labels))} has a negative label")
    top = int(labels.max()) if n else 0
    if top > np.iinfo(np.int16).max:
        raise fail(f"{prefix}labels", f"class {top}: at most {np.iinfo(np.int16).max}")
    out[f"{prefix}indices"] = indices.astype(np.int32)
    out[f"{prefix}values"] = values.astype(np.float64)
    out[f"{prefix}labels"] = labels.astype(np.int16 if top > 127 else np.int8)
    if f"{prefix}targets" in arrays:
        targets = arrays[f"{prefix}targets"]
        if targets.shape != (n,):
            raise fail(f"{prefix}targets", f"one target per row ({n}), not shape {targets.shape}")
        if not np.isfinite(targets).all():
            r = int(np.nonzero(~np.isfinite(targets))[0][0])
            raise fail(f"{prefix}targets", f"row {r} holds a target that is not finite")
        out[f"{prefix}targets"] = targets.astype(np.float64)
    return int(n)


if __name__ == "__main__":  # pragma: no cover
    print(spec_table())
