"""The deployment files, checked with the tools that run here (Docker itself cannot): the
Dockerfile with hadolint, the compose file with docker-compose's own validator (`config`,
which needs no engine), the systemd unit and the sample configuration against the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dandelion.cli import build_parser
from dandelion.settings import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/test, which installs it")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER \d+", text, re.MULTILINE)  # non-root
    assert "HEALTHCHECK" in text and "dandelion bundle" in text


def test_compose_file_is_valid() -> None:
    result = subprocess.run(
        [_tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "config", "--services"],
        capture_output=True,
        text=True,
        cwd=DEPLOY,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"coordinator", "nginx", "prometheus", "grafana"}


def test_sample_configuration_names_real_settings_with_valid_values() -> None:
    names = {s.env: s.name for s in SETTINGS}
    values: dict[str, str] = {}
    for line in (DEPLOY / "dandelion.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key in names, f"dandelion.env sets {key}, which is no setting"
            values[key] = value
    assert len(values) >= 10
    load_settings(environ=values)  # every value parses and is in range


def test_systemd_unit_runs_real_commands() -> None:
    unit = (DEPLOY / "systemd" / "dandelion.service").read_text()
    commands = re.findall(r"^Exec\w+=\S*/dandelion (\w+)", unit, re.MULTILINE)
    assert commands == ["bundle", "serve"]
    parser = build_parser()
    for line in re.findall(r"^Exec\w+=(.*)$", unit, re.MULTILINE):
        parser.parse_args(line.split()[1:])  # the flags exist
    assert "User=dandelion" in unit and "NoNewPrivileges=yes" in unit
