"""The peers' own virtual environments for ``benchmarks/vs_flower.py``, made and filled once.

Downloads happen here, when the benchmark installs a peer, never in the tests. Each install is
idempotent: an environment that already imports its framework is used as it is.

- Flower: ``flwr[simulation]==1.41.0`` (it pins Ray 2.55.1) in a virtual environment of the
  Python that runs the benchmark.
- pfl-research: ``pfl==0.6.0`` with ``torch==2.13.0+cpu`` in a virtual environment of Python
  3.11 (Debian's ``/usr/bin/python3.11``): the registries offer a CPU-only torch wheel for 3.11
  only (3.12 gets only CUDA builds, 555 MB plus the nvidia wheels). pip takes the ``+cpu`` wheel
  from wherever its configuration points (a local ``find-links`` here); ``torch_index`` adds an
  index to look in, such as PyTorch's own CPU index.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["FLOWER", "PFL", "TORCH", "ensure_flower", "ensure_pfl"]

FLOWER = "flwr[simulation]==1.41.0"
PFL = "pfl==0.6.0"
TORCH = "torch==2.13.0+cpu"


def _imports(python: Path, modules: str) -> bool:
    if not python.exists():
        return False
    check = subprocess.run([python, "-c", f"import {modules}"], capture_output=True)
    return check.returncode == 0


def _install(base: str, venv: Path, packages: list[str], extra: list[str]) -> Path:
    python = venv / "bin" / "python"
    print(f"installing {' '.join(packages)} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*cmd, *extra, *packages], check=True)
    return python


def ensure_flower(venv: Path) -> Path:
    """Flower's interpreter in ``venv`` (created and filled on first use)."""
    python = venv / "bin" / "python"
    if _imports(python, "flwr, ray"):
        return python
    return _install(sys.executable, venv, [FLOWER], [])


def ensure_pfl(venv: Path, base: str = "/usr/bin/python3.11", torch_index: str = "") -> Path:
    """pfl's interpreter in ``venv`` (created from ``base``, filled on first use). Raises
    FileNotFoundError when ``base`` is missing."""
    python = venv / "bin" / "python"
    if _imports(python, "pfl, torch"):
        return python
    if not Path(base).exists():
        raise FileNotFoundError(f"{base} not found: pfl's torch wheel needs a Python 3.11")
    extra = ["--extra-index-url", torch_index] if torch_index else []
    return _install(base, venv, [TORCH, PFL], extra)
