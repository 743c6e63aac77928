"""The docs must say what the code does: settings, CLI commands and the README's commands."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

from dandelion.cli import build_parser
from dandelion.settings import SETTINGS, load_settings, settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_settings_page_holds_the_current_table() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in page, "regenerate with: python -m dandelion.settings"


def test_every_setting_is_a_serve_flag() -> None:
    help_text = build_parser().format_help()
    serve = _subparsers(build_parser())["serve"].format_help()
    for s in SETTINGS:
        assert s.flag in serve, s.name
    assert "serve" in help_text


def test_settings_defaults_agree_with_the_dataclass() -> None:
    resolved = load_settings(environ={})
    for s in SETTINGS:
        assert getattr(resolved, s.name) == s.default, s.name


def test_environment_overrides_defaults_and_flags_override_both() -> None:
    resolved = load_settings(environ={"DANDELION_PORT": "9000"})
    assert resolved.port == 9000
    resolved = load_settings(environ={"DANDELION_PORT": "9000"}, overrides={"port": 9001})
    assert resolved.port == 9001


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_cli_command_is_documented() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    commands = _subparsers(build_parser())
    for name, sub in commands.items():
        assert f"dandelion {name}" in page, name
        for child in (
            _subparsers(sub).keys() if name in ("task", "privacy", "token", "model", "data") else []
        ):
            assert f"dandelion {name} {child}" in page, child


def test_readme_commands_exist_and_ci_runs_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.findall(r"^\s*(scripts/\w+)", readme, flags=re.MULTILINE)
    assert {"scripts/demo", "scripts/test"} <= set(found)
    for script in found:
        assert (ROOT / script).exists(), script
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_the_test_command_installs_the_servers_the_tests_start() -> None:
    system = (ROOT / "scripts" / "_system.sh").read_text()
    for package in ("postgresql", "redis-server"):
        assert re.search(rf"\|\| apt_install {package}$", system, flags=re.MULTILINE), package
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test_extra = extras["optional-dependencies"]["test"]
    assert any(dep.startswith("psycopg[binary]") for dep in test_extra)
    assert "pip_install test" in (ROOT / "scripts" / "test").read_text()


WORKED = ROOT / "docs" / "worked_example.md"
WORKED_FILES = (
    ("task.toml", "toml"),
    ("engagement/__init__.py", "python"),
    ("engagement/objective.py", "python"),
    ("engagement/model.py", "python"),
)


def render_worked_example() -> str:
    """docs/worked_example.md: the example package's files, verbatim."""
    parts = [
        "# The worked example, in full\n\n"
        "Every file of `examples/engagement/`, the task package of [tasks.md](tasks.md#the-worked-"
        "example-examplesengagement), as it is in the repository (`tests/test_docs.py` checks that "
        "this page and the files agree; `python tests/test_docs.py` rewrites it). Copy the folder "
        "structure below to start a package of your own:\n\n"
        "```\nexamples/engagement/\n  task.toml            the task file\n  engagement/          "
        "the package that goes into the worker wheel (dandelion bundle --with)\n    __init__.py    "
        "    importing it registers both plugins\n    objective.py       long_read\n    model.py  "
        "         relu_net\n```\n"
    ]
    for name, lang in WORKED_FILES:
        text = (ROOT / "examples" / "engagement" / name).read_text()
        parts.append(f"\n## `{name}`\n\n```{lang}\n{text.rstrip()}\n```\n")
    return "".join(parts)


def test_the_worked_example_page_holds_the_example_files_verbatim() -> None:
    assert WORKED.read_text() == render_worked_example(), "run: python tests/test_docs.py"


if __name__ == "__main__":
    WORKED.write_text(render_worked_example())
