"""Lay out a worker bundle (and the extension that carries one).

A bundle is a static folder::

    bundle.json                   what is in it: versions, files, sizes, sha256
    dandelion.mjs                 the page/extension API: start(), stop(), status events
    dandelion-worker.mjs          the module Web Worker that boots Pyodide and runs the worker
    pyodide-<version>/            the Pyodide runtime from the npm package, unchanged
        pyodide-lock.json         our lock file: the worker wheel, with its sha256
        dandelion_worker-<v>-py3-none-any.whl

The runtime folder carries its version so it can be cached for good; the lock file, the wheel
and the JS are revalidated (see ``dandelion.api.bundle``). Raises :class:`BundleError` when the
Pyodide runtime is missing or incomplete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..plugins import PluginPackage
from .contents import BundleContentsError, bundle_tasks
from .wheel import WORKER_DIST, _source_root, build_wheel

__all__ = [
    "BUNDLE_MANIFEST",
    "PYODIDE_FILES",
    "BundleError",
    "BundleInfo",
    "assemble_bundle",
    "assemble_extension",
    "find_pyodide",
]

BUNDLE_MANIFEST = "bundle.json"
#: What the runtime needs from the npm package (source maps and typings stay behind).
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "package.json",
)
_JS_FILES = ("dandelion.mjs", "dandelion-worker.mjs")


class BundleError(Exception):
    """The bundle cannot be built (missing Pyodide runtime, unreadable lock file, ...)."""


@dataclass(frozen=True, slots=True)
class BundleInfo:
    path: Path
    pyodide_version: str
    wheel: str
    total_bytes: int
    files: dict[str, dict[str, Any]]


def find_pyodide(explicit: str | Path | None = None) -> Path:
    """The folder of the npm ``pyodide`` package: ``explicit``, else ``$DANDELION_PYODIDE_DIR``,
    else ``node_modules/pyodide`` here or in the project's source tree."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("DANDELION_PYODIDE_DIR"):
        candidates.append(Path(os.environ["DANDELION_PYODIDE_DIR"]))
    else:
        candidates += [Path.cwd() / "node_modules" / "pyodide"]
        candidates += [_source_root() / "node_modules" / "pyodide"]
    for folder in candidates:
        if (folder / "pyodide.mjs").is_file():
            missing = [
                f for f in (*PYODIDE_FILES, "pyodide-lock.json") if not (folder / f).is_file()
            ]
            if missing:
                raise BundleError(f"{folder} lacks {', '.join(missing)}: reinstall the npm package")
            return folder
    tried = ", ".join(str(c) for c in candidates)
    raise BundleError(
        f"no Pyodide runtime found (looked in {tried}); run `npm ci` in the project root "
        "(package.json pins the npm package `pyodide`) or pass --pyodide DIR"
    )


def _pyodide_version(folder: Path) -> str:
    try:
        version = json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"cannot read the Pyodide version in {folder}: {exc}") from None
    return str(version)


def _write_lock(pyodide_dir: Path, wheel: Path, out: Path) -> None:
    """Pyodide's lock file, reduced to our wheel (the npm package ships no other wheels, so
    nothing else in it could load), with the wheel's sha256 for Pyodide's integrity check."""
    from pyodide_lock import PyodideLockSpec
    from pyodide_lock.utils import add_wheels_to_spec

    spec = PyodideLockSpec.from_json(pyodide_dir / "pyodide-lock.json")
    spec.packages = {}
    spec = add_wheels_to_spec(spec, [wheel], base_path=wheel.parent)
    spec.to_json(out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder``: its path (relative, ``/``-separated), bytes and sha256."""
    return {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextlib.contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """A new folder beside ``out`` to build into; once the build is complete it takes the place
    of ``out`` (folders renamed, so a failed build leaves an existing ``out`` as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    new, old = out.parent / f".{out.name}.new-{tag}", out.parent / f".{out.name}.old-{tag}"
    new.mkdir()  # with the umask's mode, as the folder it replaces had
    try:
        yield new
        if out.exists():
            os.replace(out, old)
            try:
                os.replace(new, out)
            except OSError:
                os.replace(old, out)
                raise
            shutil.rmtree(old)
        else:
            os.replace(new, out)
    finally:
        if new.exists():
            shutil.rmtree(new)


def assemble_bundle(
    out: Path, pyodide_dir: str | Path | None = None, plugins: Sequence[PluginPackage] = ()
) -> BundleInfo:
    """(Re)build the bundle in ``out``: the folder is replaced whole, and only once the new
    bundle is complete (a failed build leaves the old one untouched). ``plugins``: task
    packages of your own that go into the worker wheel (``--with``; imported already)."""
    runtime = find_pyodide(pyodide_dir)
    version = _pyodide_version(runtime)
    with _replacing(out) as building:
        info = _lay_out(building, runtime, version, plugins)
    return BundleInfo(out, info.pyodide_version, info.wheel, info.total_bytes, info.files)


def _lay_out(
    out: Path, runtime: Path, version: str, plugins: Sequence[PluginPackage]
) -> BundleInfo:
    folder = f"pyodide-{version}"
    target = out / folder
    target.mkdir(parents=True)
    for name in PYODIDE_FILES:
        shutil.copyfile(runtime / name, target / name)
    wheel = build_wheel(target, plugins=plugins)
    _write_lock(runtime, wheel.path, target / "pyodide-lock.json")
    js = _source_root() / "browser_worker" / "js"
    for name in _JS_FILES:
        shutil.copyfile(js / name, out / name)
    try:
        tasks = bundle_tasks(wheel.path, plugins)
    except BundleContentsError as exc:
        raise BundleError(str(exc)) from None
    files = _describe(out)
    manifest = {
        "bundle": 1,
        "pyodide": {"version": version, "path": f"{folder}/"},
        "worker": {
            "package": WORKER_DIST,
            "version": wheel.version,
            "wheel": f"{folder}/{wheel.path.name}",
            "module": "browser_worker.browser",
        },
        "tasks": tasks,
        "files": files,
    }
    (out / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(f["bytes"] for f in files.values())
    return BundleInfo(out, version, wheel.path.name, total, files)


def _check_coordinator_url(url: str) -> str:
    """The rule the options page applies too (``extension/settings.js``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise BundleError(f"the coordinator URL must be ws:// or wss://, not {url!r}")
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise BundleError(
            f"the coordinator URL {url!r} must name a host, with no user, password or #fragment"
        )
    return url


# Loopback hosts a CSP source can name. Not [::1]: CSP's host grammar has no IPv6 literals
# (Chromium ignores "http://[::1]:8750" as an invalid source), so a build for ws://[::1] gets
# no plain-http origin and its predict() is refused: build it for 127.0.0.1 or localhost.
_LOOPBACK = ("127.0.0.1", "localhost")


def _connect_sources(coordinator_url: str | None) -> list[str]:
    """What the extension pages may connect to: themselves, a WebSocket to any coordinator (the
    user may pick another on the options page), https for the public model endpoint
    (``predict()`` fetches the model document and its weights, data, not code) and, for a
    development build whose coordinator is a ``ws://`` loopback address, that coordinator's
    plain-http origin. A store build allows no plain http at all."""
    sources = ["'self'", "ws:", "wss:", "https:"]
    if coordinator_url is not None:
        parts = urlsplit(coordinator_url)
        if parts.scheme == "ws" and parts.hostname in _LOOPBACK:
            sources.append(f"http://{parts.netloc}")
    return sources


def _write_manifest(out: Path, coordinator_url: str | None) -> None:
    """The source manifest with ``connect-src`` set for this build (``_connect_sources``)."""
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    policy = manifest["content_security_policy"]["extension_pages"]
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    connect = " ".join(["connect-src", *_connect_sources(coordinator_url)])
    directives = [connect if d.split()[0] == "connect-src" else d for d in directives]
    manifest["content_security_policy"]["extension_pages"] = "; ".join(directives)
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def assemble_extension(
    out: Path,
    coordinator_url: str | None = None,
    pyodide_dir: str | Path | None = None,
    plugins: Sequence[PluginPackage] = (),
) -> BundleInfo:
    """The unpacked Manifest V3 extension in ``out``, with a bundle in ``out/worker/`` and, in
    ``out/config.json``, the coordinator it reports to until the user picks another on its
    options page (``None``: none, and the options page asks for one before the user can take
    part). The manifest's ``connect-src`` follows ``_connect_sources``. Describes every file of
    the extension."""
    source = _source_root() / "browser_worker" / "extension"
    if not (source / "manifest.json").is_file():
        raise BundleError(f"no extension sources in {source}")
    if coordinator_url is not None:
        _check_coordinator_url(coordinator_url)
    with _replacing(out) as building:
        shutil.copytree(source, building, dirs_exist_ok=True)
        bundle = assemble_bundle(building / "worker", pyodide_dir, plugins)
        config = json.dumps({"coordinatorUrl": coordinator_url}) + "\n"
        (building / "config.json").write_text(config)
        _write_manifest(building, coordinator_url)
        files = _describe(building)
    total = sum(f["bytes"] for f in files.values())
    return BundleInfo(out, bundle.pyodide_version, bundle.wheel, total, files)
