"""``dandelion emulate`` as a user runs it: JSON summary, results files, clear errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def dandelion(*args: str) -> subprocess.CompletedProcess[str]:
    # Standard error is a pipe, and nothing in the environment says to treat it as a terminal.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_emulate_prints_a_summary_and_writes_csv_json_and_svg(tmp_path: Path) -> None:
    population = tmp_path / "pop.toml"
    population.write_text(
        "[data]\nhistory_days = 9.0\ntest_users = 10\n"
        "[task]\nname = 'cli'\nobjective = 'revisit_7d'\nfeatures = { num_buckets = 64 }\n"
        "model = { kind = 'logreg' }\n"
        "hyper = { learning_rate = 0.3, epochs = 1, batch_size = 16, clip_norm = 10.0 }\n"
    )
    out = tmp_path / "run"
    result = dandelion(
        "emulate", "--population", str(population), "--workers", "300", "--rounds", "2",
        "--cohort", "30", "--json", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Standard output is the one JSON object; the progress went to standard error (a pipe
    # here: plain lines, no terminal codes), the last round's line among them.
    summary = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1
    assert "2/2 rounds, round 2 completed" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert summary["rounds"] == 2
    assert summary["population"] == 300
    assert summary["seed"] == 1 and summary["code"]["version"]
    for key in ("wall_s", "clients_per_s", "final_accuracy", "peak_rss_mb"):
        assert summary[key] > 0, key
    with open(out / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows if r["status"] == "completed"] == ["completed"] * 2
    assert json.loads((out / "result.json").read_text())["rounds"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "model.safetensors", "result.json", "rounds.csv", "rounds.svg", "timing.csv",
        "timing.json",
    ]  # fmt: skip
    assert summary["files"]["model"] == str(out / "model.safetensors")
    svg = ET.parse(out / "rounds.svg").getroot()
    assert svg.tag.endswith("svg")
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polyline")) == 4


def test_a_bad_population_file_exits_2_and_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[compute]\nstraggler_share = 3\n")
    result = dandelion("emulate", "--population", str(bad))
    assert result.returncode == 2
    assert "compute.straggler_share" in result.stderr


def test_the_dp_example_on_a_small_population_warns_at_start_and_stops() -> None:
    root = Path(__file__).resolve().parent.parent
    result = dandelion(
        "emulate", "--task", str(root / "examples" / "revisit-7d-dp.toml"), "--workers", "200",
        "--rounds", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 1  # fewer rounds completed than asked
    first = result.stderr.splitlines()[0]
    assert first.startswith("warning: task revisit-7d-dp:") and "min_reports = 800" in first
    assert "rounds in a row were abandoned" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["stopped"] == "rounds_abandoned" and summary["rounds"] == 0
    assert summary["warnings"][0] == first.removeprefix("warning: ")
