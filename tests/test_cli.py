"""The command line, as a user runs it: task files in, task state out; the demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dandelion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args], capture_output=True, text=True, timeout=600
    )


def test_task_create_list_show(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    created = dandelion("task", "create", str(ROOT / "examples" / "revisit-7d.toml"), "--db", db)
    assert created.returncode == 0, created.stderr
    assert "created task revisit-7d" in created.stdout
    again = dandelion("task", "create", str(ROOT / "examples" / "revisit-7d.toml"), "--db", db)
    assert again.returncode == 2
    assert "exists already" in again.stderr
    listed = json.loads(dandelion("task", "list", "--json", "--db", db).stdout)
    assert [(t["name"], t["status"], t["model_version"]) for t in listed] == [
        ("revisit-7d", "active", 0)
    ]
    shown = json.loads(dandelion("task", "show", "revisit-7d", "--json", "--db", db).stdout)
    assert shown["config"]["rounds"]["goal"] == 100
    missing = dandelion("task", "show", "nope", "--db", db)
    assert missing.returncode == 1


def test_a_bad_task_file_is_refused_with_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\nobjective = "page_examples"\n[model]\nkind = "logreg"\nnum_features = 0\n'
    )
    result = dandelion("task", "create", str(bad), "--db", str(tmp_path / "s.db"))
    assert result.returncode == 2
    assert "model" in result.stderr


def test_bad_settings_are_refused() -> None:
    result = dandelion("serve", "--port", "-5")
    assert result.returncode == 2
    assert "port" in result.stderr


def test_demo_json_reports_rounds_and_accuracy() -> None:
    result = dandelion("demo", "--workers", "6", "--rounds", "3", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds"] == 3
    assert len(summary["accuracy_per_round"]) == 3
    assert 0.5 < summary["final_accuracy"] <= 1.0
    assert 0.5 < summary["baseline_accuracy"] <= 1.0
