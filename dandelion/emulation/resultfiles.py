"""The files of a run (``dandelion emulate --out DIR``, :func:`write_results`).

``result.json``, ``rounds.csv`` and ``model.safetensors`` hold nothing that depends on the wall
clock, the machine or where files are: for a run on virtual time they are the same bytes for
the same seed, options and code. Wall time, memory and the host go to ``timing.json`` and
``timing.csv``. ``rounds.svg`` is the figure of ``rounds.csv``. docs/emulation.md, "Results",
describes every field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from .. import __version__
from .provenance import code_label
from .results import RunResult

__all__ = ["FILES", "FORMAT", "write_results"]

#: The version of the files' layout; it changes when a field changes meaning or goes away.
FORMAT = 1
#: The files, by what they hold.
FILES = {
    "result": "result.json",
    "rounds": "rounds.csv",
    "model": "model.safetensors",
    "figure": "rounds.svg",
    "timing": "timing.json",
    "timing_rounds": "timing.csv",
}


def write_results(result: RunResult, out: str | Path) -> dict[str, str]:
    """Write the run's files into ``out`` (made if missing); return their paths by what they
    hold (``model`` only when the run has a final model and its task)."""
    from .plot import rounds_svg

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    names = dict(FILES)
    model = _model_bytes(result)
    if model is None:
        del names["model"]
    else:
        (folder / names["model"]).write_bytes(model)
    _write(folder / names["result"], _json(_result_body(result, names)))
    _write(folder / names["rounds"], _rounds_csv(result))
    _write(folder / names["figure"], rounds_svg(result.rounds, title=_title(result)))
    _write(folder / names["timing"], _json(_timing_body(result)))
    _write(folder / names["timing_rounds"], _timing_csv(result))
    return {what: str(folder / name) for what, name in names.items()}


def _result_body(result: RunResult, names: dict[str, str]) -> dict[str, Any]:
    info = result.info
    return {
        "format": FORMAT,
        "dandelion": __version__,
        "code": info.code if info is not None else None,
        "seed": info.seed if info is not None else None,
        "mode": result.mode,
        "backend": result.backend,
        "options": info.options if info is not None else None,
        "population": info.population if info is not None else {"size": result.population},
        "task": info.task if info is not None else None,
        "data": info.data if info is not None else None,
        **result.figures(),
        "counters": dict(sorted(result.counters.items())),
        "warnings": list(result.warnings),
        "files": {what: name for what, name in names.items() if what != "result"},
        "per_round": [r.figures() for r in result.rounds],
    }


def _rounds_csv(result: RunResult) -> str:
    info = result.info
    seed = info.seed if info is not None else ""
    code = code_label(info.code) if info is not None else ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = [r.figures() for r in result.rounds]
    head = [*(rows[0] if rows else _empty_record()), "participation", "seed", "code_version"]
    writer.writerow(head)
    for record, row in zip(result.rounds, rows, strict=True):
        writer.writerow([*row.values(), round(record.participation, 4), seed, code])
    return buffer.getvalue()


def _empty_record() -> list[str]:
    from dataclasses import fields

    from .results import WALL_FIELDS, RoundRecord

    return [f.name for f in fields(RoundRecord) if f.name not in WALL_FIELDS]


def _model_bytes(result: RunResult) -> bytes | None:
    """The final model as a safetensors file: the export's layout and metadata, with the run's
    seed, its task as run and the code version beside them."""
    info = result.info
    if result.params is None or info is None:
        return None
    import numpy as np

    from ..export import Release, safetensors_bytes
    from ..taskspec.models import ModelSpec

    task = info.task
    done = result.completed
    release = Release(
        task=str(task["name"]),
        version=result.model_version,
        round=done[-1].round if done else 0,
        objective=str(task["objective"]),
        features=dict(task.get("features") or {}),
        spec=ModelSpec.from_dict(task["model"]),
        params=np.asarray(result.params, dtype="<f4").tobytes(),
    )
    extra = {
        "emulation_seed": str(info.seed),
        "task_config": json.dumps(_plain(task), sort_keys=True, allow_nan=False),
        "code_version": code_label(info.code),
    }
    return safetensors_bytes(release, extra)


def _timing_body(result: RunResult) -> dict[str, Any]:
    reports = sum(r.reported for r in result.completed)
    started = result.started_at
    return {
        "format": FORMAT,
        "started_at": (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)) if started else None
        ),
        "wall_s": round(result.wall_s, 3),
        "clients_per_s": round(reports / result.wall_s, 1) if result.wall_s > 0 else 0.0,
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "host": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "system": platform.system(),
        },
    }


def _timing_csv(result: RunResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["round", "status", "virtual_s", "wall_s"])
    for r in result.rounds:
        writer.writerow([r.round, r.status, r.virtual_s, round(r.wall_s, 3)])
    return buffer.getvalue()


def _title(result: RunResult) -> str:
    return f"{result.population:,} emulated workers ({result.mode}, {result.backend})"


def _json(body: dict[str, Any]) -> str:
    return json.dumps(_plain(body), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="")
