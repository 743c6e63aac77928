"""Task packages of your own (objectives and models as plugins) for the tools: ``--with``.

``dandelion bundle --with PATH_OR_PACKAGE`` puts a pure-Python package into the worker wheel;
``task create``, ``task check``, ``emulate`` and ``model export`` take the same ``--with`` to
import it here. A package is named by a path (a package folder with ``__init__.py``, or one
``.py`` module) or by an importable name. Importing it runs its ``register_objective`` /
``register_model`` calls.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from .taskspec import registry

__all__ = ["PluginError", "PluginPackage", "find_package", "use_plugins"]


class PluginError(Exception):
    """A ``--with`` argument that is not a pure-Python package or module."""


@dataclass(frozen=True, slots=True)
class PluginPackage:
    name: str  # the top-level import name
    path: Path  # its folder (a package) or its file (a module)

    @property
    def is_module(self) -> bool:
        return self.path.is_file()

    def files(self) -> list[tuple[str, Path]]:
        """``(archive name, file)`` of what goes into a wheel: its ``.py`` files and data
        files, never bytecode. Raises PluginError for a compiled extension module."""
        if self.is_module:
            return [(self.path.name, self.path)]
        out: list[tuple[str, Path]] = []
        for path in sorted(self.path.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if path.suffix in (".so", ".pyd", ".dylib", ".dll"):
                raise PluginError(
                    f"{path}: a compiled module; the worker runs pure Python only (Pyodide)"
                )
            rel = path.relative_to(self.path.parent).as_posix()
            out.append((rel, path))
        return out


def find_package(spec: str) -> PluginPackage:
    """The package ``spec`` names (a path or an import name). Raises PluginError."""
    path = Path(spec)
    if path.exists():
        path = path.resolve()
        if path.is_dir():
            if not (path / "__init__.py").is_file():
                raise PluginError(f"{spec}: a package folder needs an __init__.py")
            return PluginPackage(path.name, path)
        if path.suffix == ".py":
            return PluginPackage(path.stem, path)
        raise PluginError(f"{spec}: neither a package folder nor a .py module")
    if not spec.isidentifier():
        raise PluginError(f"{spec}: no such file or folder, and not an importable name")
    found = importlib.util.find_spec(spec)
    if found is None or found.origin is None:
        raise PluginError(f"{spec}: no such file or folder, and no importable package of that name")
    origin = Path(found.origin)
    if origin.name == "__init__.py":
        return PluginPackage(spec, origin.parent)
    if origin.suffix != ".py":
        raise PluginError(f"{spec}: {origin} is not pure Python")
    return PluginPackage(spec, origin)


def use_plugins(specs: list[str] | None) -> list[PluginPackage]:
    """Import each package named by ``--with`` (its folder's parent goes on ``sys.path``) and
    the installed ones declared under the ``dandelion.tasks`` entry points. Every folder goes
    on ``sys.path`` before any package is imported, so that one package may import another
    whatever the order of the flags (the wheel holds them all, in the worker too)."""
    packages = [find_package(spec) for spec in specs or []]
    for package in packages:
        parent = str(package.path.parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
    for package in packages:
        try:
            importlib.import_module(package.name)
        except Exception as exc:
            raise PluginError(f"{package.name}: importing it failed: {exc!r}") from None
    registry.reset_plugins()
    registry.load_plugins()
    return packages
