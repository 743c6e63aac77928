"""A task package of your own: `--with` puts it into the worker wheel (and so the bundle), the
bundle says what it can run, `serve` refuses a task its bundle cannot run in one line, and
`task check` / `task create` / `emulate` import the same package."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from dandelion.bundle import assemble_bundle
from dandelion.bundle.wheel import build_wheel
from dandelion.plugins import PluginError, find_package

from .test_single_writer import Serve, dandelion, one_line

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "engagement"
PACKAGE = EXAMPLE / "engagement"


def test_with_puts_the_package_and_its_entry_point_into_the_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, plugins=[find_package(str(PACKAGE))])
    with zipfile.ZipFile(wheel.path) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(info).decode()
        top = archive.read(info.replace("entry_points.txt", "top_level.txt")).decode().split()
    assert {"engagement/__init__.py", "engagement/model.py", "engagement/objective.py"} <= names
    assert (
        "dandelion/taskspec/registry.py" in names and "dandelion/coordinator/rounds.py" not in names
    )
    assert not any(n.endswith(".pyc") for n in names)
    assert entry_points == "[dandelion.tasks]\nengagement = engagement\n"
    assert top == ["browser_worker", "dandelion", "engagement"]


def test_a_package_that_is_not_pure_python_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "fast"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_speed.so").write_bytes(b"\x7fELF")
    with pytest.raises(PluginError, match="a compiled module; the worker runs pure Python only"):
        find_package(str(package)).files()
    with pytest.raises(PluginError, match=r"needs an __init__\.py"):
        find_package(str(tmp_path))
    with pytest.raises(PluginError, match="no importable package"):
        find_package("no_such_package_here")


def test_task_check_imports_the_package_named_by_with() -> None:
    task = str(EXAMPLE / "task.toml")
    without = dandelion("task", "check", task)
    assert without.returncode == 2
    assert one_line(without).startswith(
        "dandelion task check: objective: objective 'long_read' is not known here"
    )
    with_it = dandelion("task", "check", task, "--with", str(PACKAGE), "--json")
    assert with_it.returncode == 0, with_it.stderr
    assert json.loads(with_it.stdout)["param_count"] == 8 * 263 + 8 + 8 + 1


async def test_serve_refuses_a_task_its_bundle_cannot_run(tmp_path: Path) -> None:
    plain, full = tmp_path / "plain", tmp_path / "full"
    assemble_bundle(plain)
    assert dandelion("bundle", "--out", str(full), "--with", str(PACKAGE)).returncode == 0
    tasks = json.loads((full / "bundle.json").read_text())["tasks"]
    assert {"long_read", "revisit_7d"} <= set(tasks["objectives"])
    assert "relu_net" in tasks["models"] and "engagement.objective" in tasks["modules"]
    db = tmp_path / "state.db"
    created = dandelion(
        "task", "create", str(EXAMPLE / "task.toml"), "--with", str(PACKAGE), "--db", str(db)
    )
    assert created.returncode == 0, created.stderr

    refused = dandelion("serve", "--db", str(db), "--port", "0", "--bundle-dir", str(plain))
    assert refused.returncode == 2
    assert one_line(refused) == (
        f"dandelion serve: task long-read: objective 'long_read' and model 'relu_net' not in "
        f"the served bundle {plain} (rebuild it: dandelion bundle --with PACKAGE)"
    )
    nothing = dandelion(
        "serve", "--db", str(db), "--port", "0", "--bundle-dir", str(tmp_path / "none")
    )
    assert nothing.returncode == 2
    assert "objective 'long_read' and model 'relu_net' not known here" in one_line(nothing)
    # The same refusal for a task given as a file, before its objective is looked up.
    fresh = tmp_path / "fresh.db"
    as_file = ["serve", "--db", str(fresh), "--port", "0", "--task", str(EXAMPLE / "task.toml")]
    refused_file = dandelion(*as_file, "--bundle-dir", str(plain))
    assert refused_file.returncode == 2
    assert one_line(refused_file) == one_line(refused)
    nothing_file = dandelion(*as_file, "--bundle-dir", str(tmp_path / "none"))
    assert nothing_file.returncode == 2
    assert one_line(nothing_file) == one_line(nothing)
    assert not fresh.exists()

    # The bundle that holds the package: serve configures the task with the wheel's own code.
    server = Serve(tmp_path, db, "--bundle-dir", str(full)).start()
    try:
        await server.ready()
    finally:
        server.close()


def test_the_bundle_lists_what_its_wheel_registers_not_what_this_process_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process knows long_read (imported here), the plain wheel does not hold it.
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from dandelion.taskspec import registry

    __import__("engagement")
    assert "long_read" in registry.OBJECTIVES
    tasks = json.loads((assemble_bundle(tmp_path / "b").path / "bundle.json").read_text())["tasks"]
    assert "long_read" not in tasks["objectives"] and "relu_net" not in tasks["models"]
    assert {"next_site", "revisit_7d", "tab_switch"} <= set(tasks["objectives"])


def test_a_package_that_needs_numpy_at_import_is_refused_by_bundle(tmp_path: Path) -> None:
    package = tmp_path / "heavy"
    package.mkdir()
    (package / "__init__.py").write_text("import numpy\n")
    done = dandelion("bundle", "--out", str(tmp_path / "b"), "--with", str(package))
    assert done.returncode == 2, done.stderr
    assert "heavy: ModuleNotFoundError: No module named 'numpy'" in one_line(done)
    assert "standard library alone" in one_line(done)


_LOW = """from dandelion.taskspec import register_objective
from dandelion.taskspec.objectives.revisit import Revisit


@register_objective("low_gap")
class LowGap(Revisit):
    pass
"""
_HIGH = """from dandelion.taskspec import register_objective
from lowgap import LowGap


@register_objective("high_gap")
class HighGap(LowGap):
    pass
"""


def test_with_order_does_not_matter_when_one_package_imports_another(tmp_path: Path) -> None:
    """`highgap` imports `lowgap`, each from a folder of its own: naming `highgap` first works
    for `task check` and for `bundle` (every folder is on the path before any import)."""
    for folder, name, source in (("one", "lowgap", _LOW), ("two", "highgap", _HIGH)):
        (tmp_path / folder / name).mkdir(parents=True)
        (tmp_path / folder / name / "__init__.py").write_text(source)
    high, low = str(tmp_path / "two" / "highgap"), str(tmp_path / "one" / "lowgap")
    task = tmp_path / "task.toml"
    task.write_text('name = "high-gap"\nobjective = "high_gap"\n[model]\nkind = "logreg"\n')
    checked = dandelion("task", "check", str(task), "--with", high, "--with", low)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: task high-gap")
    out = tmp_path / "b"
    built = dandelion("bundle", "--out", str(out), "--with", high, "--with", low)
    assert built.returncode == 0, built.stderr
    tasks = json.loads((out / "bundle.json").read_text())["tasks"]
    assert {"high_gap", "low_gap"} <= set(tasks["objectives"])
    assert tasks["packages"] == ["highgap", "lowgap"]


def test_serve_names_the_nearest_name_the_bundle_has_for_a_misspelt_one(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    assemble_bundle(plain)
    task = tmp_path / "typo.toml"
    task.write_text('name = "typo"\nobjective = "revisit_7b"\n')
    db = tmp_path / "state.db"
    refused = dandelion(
        "serve", "--db", str(db), "--port", "0", "--task", str(task), "--bundle-dir", str(plain)
    )
    assert refused.returncode == 2
    assert one_line(refused) == (
        f"dandelion serve: task typo: objective 'revisit_7b' not in the served bundle {plain} "
        "(rebuild it: dandelion bundle --with PACKAGE); did you mean objective 'revisit_7d'?"
    )
    assert not db.exists()
