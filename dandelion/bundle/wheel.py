"""Build the worker wheel: the code a browser runs, and only that.

The project's own distribution holds the whole coordinator; a browser needs the worker and the
sans-I/O protocol. This module packs exactly those into ``dandelion_worker-<version>-py3-none-
any.whl``, byte-for-byte reproducible (sorted entries, fixed timestamps), which Pyodide installs
offline through the bundle's lock file. A wheel is a zip with a ``.dist-info`` folder (PEP 427);
writing one takes a few lines, so no build backend runs here.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dandelion

from ..plugins import PluginError, PluginPackage
from ..taskspec.registry import ENTRY_POINTS

__all__ = ["WORKER_DIST", "WORKER_PACKAGES", "WheelInfo", "build_wheel", "worker_files"]

#: The distribution name Pyodide knows the worker by (``loadPackage("dandelion-worker")``).
WORKER_DIST = "dandelion-worker"
#: Source folders (relative to the project root) that go into the wheel.
WORKER_PACKAGES = ("browser_worker", "dandelion/protocol", "dandelion/taskspec")
#: Single modules that go in as well: the light top-level package.
WORKER_MODULES = ("dandelion/__init__.py",)
#: Worker modules that only make sense outside a browser.
_EXCLUDED = ("browser_worker/host/cpython.py",)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: reproducible archives


@dataclass(frozen=True, slots=True)
class WheelInfo:
    path: Path
    version: str
    sha256: str
    files: int


def _source_root() -> Path:
    return Path(dandelion.__file__).resolve().parent.parent


def worker_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """``(archive name, file)`` of every module the wheel holds, sorted."""
    root = root or _source_root()
    found: dict[str, Path] = {}
    for package in WORKER_PACKAGES:
        for path in (root / package).rglob("*.py"):
            name = path.relative_to(root).as_posix()
            if name not in _EXCLUDED:
                found[name] = path
    for module in WORKER_MODULES:
        found[module] = root / module
    return sorted(found.items())


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(
    out_dir: Path,
    *,
    version: str | None = None,
    plugins: Sequence[PluginPackage] = (),
) -> WheelInfo:
    """Write the worker wheel into ``out_dir`` and describe it. ``plugins``: task packages of
    your own (``dandelion bundle --with``), declared in the wheel's ``dandelion.tasks``
    entry points so that the worker imports them at start."""
    version = version or dandelion.__version__
    dist = WORKER_DIST.replace("-", "_")
    info_dir = f"{dist}-{version}.dist-info"
    files = dict(worker_files())
    for package in plugins:
        if package.name in ("browser_worker", "dandelion"):
            raise PluginError(f"{package.name}: a plugin cannot replace the worker's own package")
        files.update(package.files())
    entries: list[tuple[str, bytes]] = [
        (name, path.read_bytes()) for name, path in sorted(files.items())
    ]
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {WORKER_DIST}\n"
        f"Version: {version}\n"
        "Summary: Dandelion's browser worker: pure-Python federated training for Pyodide.\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.12\n"
    )
    wheel_meta = (
        "Wheel-Version: 1.0\nGenerator: dandelion-bundle\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    entries.append((f"{info_dir}/METADATA", metadata.encode()))
    entries.append((f"{info_dir}/WHEEL", wheel_meta.encode()))
    top_level = ["browser_worker", "dandelion", *sorted(p.name for p in plugins)]
    entries.append((f"{info_dir}/top_level.txt", ("\n".join(top_level) + "\n").encode()))
    if plugins:
        points = "".join(f"{p.name} = {p.name}\n" for p in sorted(plugins, key=lambda p: p.name))
        entries.append((f"{info_dir}/entry_points.txt", f"[{ENTRY_POINTS}]\n{points}".encode()))
    record = [_record_line(name, data) for name, data in entries]
    record.append(f"{info_dir}/RECORD,,")
    entries.append((f"{info_dir}/RECORD", ("\n".join(record) + "\n").encode()))

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            member = zipfile.ZipInfo(name, date_time=_EPOCH)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            archive.writestr(member, data)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return WheelInfo(path, version, sha, len(entries))
