"""What a run was: its seed, population, task, data and the code that ran it — what
``result.json`` records so that a result says how to make it again.

Nothing here depends on where or when the run happened: the code's version is the package
version and, for a git checkout, its commit and whether tracked files differ from it (read
with ``git`` on this machine, no network); a data table is named by the SHA-256 of its bytes,
never by its path.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from .localdata import DataSource
    from .plan import EmulationPlan

__all__ = ["RunInfo", "code_label", "code_version", "run_info"]

_ROOT = Path(__file__).resolve().parent.parent.parent
#: Untracked files here make a checkout dirty too (new modules); elsewhere they do not (the
#: results of a run written into the checkout, say).
_SOURCE_DIRS = ("dandelion/", "browser_worker/")


@dataclass(frozen=True, slots=True)
class RunInfo:
    seed: int
    population: dict[str, Any]  # the population file as run, without its [task]
    task: dict[str, Any]  # the task as run (TaskConfig.to_dict)
    data: dict[str, Any]  # {"kind": "synthetic"} or a table's {"kind", "sha256", "bytes"}
    code: dict[str, Any]  # {"version", "commit", "dirty"}
    options: dict[str, Any]  # the emulator's options that shape the run (backend's processes…)


def run_info(plan: EmulationPlan, options: dict[str, Any]) -> RunInfo:
    population = plan.config.to_dict()
    population.pop("task", None)
    return RunInfo(
        seed=plan.config.seed,
        population=population,
        task=plan.task.to_dict(),
        data=_data(plan.source),
        code=code_version(),
        options=dict(options),
    )


def _data(source: DataSource) -> dict[str, Any]:
    from .localdata import TableSource

    if not isinstance(source, TableSource):
        return {"kind": "synthetic"}  # made from the seed and the population's [data]
    digest = hashlib.sha256()
    size = 0
    with open(source.path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"kind": "table", "sha256": digest.hexdigest(), "bytes": size}


@functools.cache
def code_version() -> dict[str, Any]:
    """``version`` (the package's), ``commit`` (the git commit of the source tree, None when
    it is not a git checkout) and ``dirty`` (tracked files differ from that commit, or there
    are untracked files among the sources; None without a commit)."""
    commit = _git("rev-parse", "--verify", "HEAD")
    toplevel = _git("rev-parse", "--show-toplevel")
    if commit is None or toplevel is None or Path(toplevel).resolve() != _ROOT:
        return {"version": __version__, "commit": None, "dirty": None}
    status = _git("status", "--porcelain=v1", "--untracked-files=all") or ""
    dirty = any(
        not line.startswith("??") or line[3:].startswith(_SOURCE_DIRS)
        for line in status.splitlines()
        if line
    )
    return {"version": __version__, "commit": commit, "dirty": dirty}


def code_label(code: dict[str, Any]) -> str:
    """One string for the code: ``0.1.0``, ``0.1.0+1a2b3c4d5e6f`` (the commit's first 12
    hex digits) or ``0.1.0+1a2b3c4d5e6f.dirty``."""
    label = str(code["version"])
    if code.get("commit"):
        label += f"+{str(code['commit'])[:12]}"
        if code.get("dirty"):
            label += ".dirty"
    return label


def _git(*args: str) -> str | None:
    # GIT_OPTIONAL_LOCKS=0: `git status` does not write the index (no lock, no change).
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", str(_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.rstrip() if done.returncode == 0 else None
