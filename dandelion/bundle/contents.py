"""What a worker bundle can run: the objectives and models its wheel holds.

``bundle.json`` records them under ``"tasks"`` when the bundle is built: the names registered
by the built-in objectives and models and by every ``--with`` package, and the modules of
those packages (for tasks that name ``package.module:attribute``). ``dandelion serve`` reads
it and refuses a task the served bundle cannot run (:func:`missing`), and puts the bundle's
wheel on ``sys.path`` so the coordinator configures tasks with the same plugin code
(:func:`use_bundle_plugins`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..plugins import PluginPackage
from ..taskspec import registry
from ..taskspec.tables import nearest

__all__ = [
    "BundleContentsError",
    "bundle_tasks",
    "missing",
    "near_miss",
    "read_bundle_tasks",
    "unknown_here",
    "use_bundle_plugins",
]


def _modules(package: PluginPackage) -> list[str]:
    if package.is_module:
        return [package.name]
    out = []
    for name, _ in package.files():
        if name.endswith(".py"):
            parts = name[:-3].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(".".join(parts))
    return sorted(out)


#: Run with only the standard library and the wheel on the path: what the wheel itself registers.
_LIST_NAMES = """
import json, sys
from importlib.metadata import entry_points
sys.path.insert(0, sys.argv[1])
from dandelion.taskspec import registry
registry.objective("revisit_7d")
failed = []
for ep in entry_points(group=registry.ENTRY_POINTS):
    try:
        ep.load()
    except Exception as exc:
        failed.append(f"{ep.value}: {type(exc).__name__}: {exc}")
named = lambda table: sorted(n for n in table if registry.NAME.match(n))
print(json.dumps({"objectives": named(registry.OBJECTIVES), "models": named(registry.MODELS),
                  "failed": failed}))
"""


class BundleContentsError(ValueError):
    """A bundled plugin package does not import in the worker's environment."""


def bundle_tasks(wheel: Path, plugins: Sequence[PluginPackage]) -> dict[str, Any]:
    """The ``"tasks"`` entry of bundle.json: the names the wheel registers when it is imported
    with the standard library alone, as in the worker (not what this process happens to have
    registered). Raises BundleContentsError for a bundled package that fails to import."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _LIST_NAMES, str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleContentsError(f"the worker wheel does not import: {last}")
    names = json.loads(done.stdout)
    if names["failed"]:
        raise BundleContentsError(
            "a bundled package fails to import with the standard library alone, as the worker "
            f"runs it (import numpy and the like inside functions): {names['failed'][0]}"
        )
    return {
        "objectives": names["objectives"],
        "models": names["models"],
        "packages": sorted(p.name for p in plugins),
        "modules": sorted(m for p in plugins for m in _modules(p)),
    }


def read_bundle_tasks(bundle_dir: str | Path) -> dict[str, Any] | None:
    """The bundle's ``"tasks"`` entry and its wheel path; None when no bundle is there."""
    manifest_path = Path(bundle_dir) / "bundle.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    tasks = dict(manifest.get("tasks") or {})
    tasks["wheel"] = str(Path(bundle_dir) / manifest["worker"]["wheel"])
    return tasks


def use_bundle_plugins(tasks: dict[str, Any]) -> None:
    """Make the bundle's plugin packages importable here, from its own wheel (appended to
    ``sys.path``: the installed Dandelion still wins for its own packages)."""
    if tasks.get("packages") and tasks["wheel"] not in sys.path:
        sys.path.append(tasks["wheel"])
        registry.reset_plugins()
        registry.load_plugins()


def _has(tasks: dict[str, Any], names: str, ref: str) -> bool:
    if ":" not in ref:
        return ref in tasks.get(names, [])
    module = ref.split(":")[0]
    return module.startswith("dandelion.taskspec.") or module in tasks.get("modules", [])


def missing(tasks: dict[str, Any], objective_ref: str, model_kind: str) -> str | None:
    """What of a task the bundle lacks, in words; None when it has both."""
    lacking = _lacking(
        ("objective", objective_ref, _has(tasks, "objectives", objective_ref)),
        ("model", model_kind, not model_kind or _has(tasks, "models", model_kind)),
    )
    return f"{lacking} not in the served bundle" if lacking else None


def near_miss(tasks: dict[str, Any], objective_ref: str, model_kind: str) -> str:
    """``"; did you mean objective 'x'?"`` when a name the bundle lacks is close to one it
    has (a misspelling); "" otherwise."""
    for what, ref, names in (
        ("objective", objective_ref, "objectives"),
        ("model", model_kind, "models"),
    ):
        if ref and ":" not in ref and not _has(tasks, names, ref):
            near = nearest(ref, tasks.get(names, []))
            if near:
                return f"; did you mean {what} {near!r}?"
    return ""


def _lacking(*checks: tuple[str, str, bool]) -> str:
    """``"objective 'x' and model 'y'"`` for the checks that failed; "" when none did."""
    return " and ".join(f"{what} {ref!r}" for what, ref, present in checks if not present)


def _known_here(find: Any, ref: str) -> bool:
    try:
        find(ref)
    except registry.UnknownPlugin:
        return False
    return True


def unknown_here(objective_ref: str, model_kind: str) -> str | None:
    """With no bundle served: what of a task this process cannot resolve, in words."""
    lacking = _lacking(
        ("objective", objective_ref, _known_here(registry.objective, objective_ref)),
        ("model", model_kind, not model_kind or _known_here(registry.model, model_kind)),
    )
    return f"{lacking} not known here and no bundle is served" if lacking else None
