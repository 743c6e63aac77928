"""``dandelion model export``: one model version of a task, from the state file, as an ONNX or
a safetensors file (``dandelion.export``).

The operator who runs it owns the state file: any committed version can be exported, whatever
the k threshold or ``public_model`` say about publishing it (those rule the public endpoint).
Raises :class:`~dandelion.export.ExportError` (exit status 2) for a missing state file, task or
version, a model without an ONNX form, or an ``--out`` that cannot be written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .export import ExportError, onnx_bytes, read_release, safetensors_bytes
from .serve_cli import migrating
from .storage.location import is_postgres_url, open_state

__all__ = ["FORMATS", "export_model"]

FORMATS = ("onnx", "safetensors")


def export_model(db: str, task: str, version: int | None, fmt: str, out: str) -> dict[str, Any]:
    """Write version ``version`` (None: the latest) of ``task`` to ``out`` in ``fmt``; returns
    what was written. Raises ExportError."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")
    if not is_postgres_url(db) and not Path(db).is_file():
        raise ExportError(f"no state file at {db} (--db)")
    with migrating("model export", db):
        store = open_state(db)
    try:
        release = read_release(store, task, version)
    finally:
        store.close()
    data = onnx_bytes(release) if fmt == "onnx" else safetensors_bytes(release)
    _write(Path(out), data)
    return {
        "task": release.task,
        "version": release.version,
        "format": fmt,
        "path": out,
        "bytes": len(data),
        "param_count": release.spec.param_count,
        "outputs": release.outputs,
        "sha256": release.sha256,
    }


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ExportError(f"--out {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o644)  # an artefact to hand on, not a secret (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"--out {path}: {exc.strerror or exc}") from None
