"""``dandelion emulate`` as a user runs it: JSON summary, results files, clear errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def dandelion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args], capture_output=True, text=True, timeout=600
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
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds"] == 2
    assert summary["population"] == 300
    for key in ("wall_s", "clients_per_s", "final_accuracy", "peak_rss_mb"):
        assert summary[key] > 0, key
    with open(out / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows if r["status"] == "completed"] == ["completed"] * 2
    assert json.loads((out / "result.json").read_text())["rounds"] == 2
    svg = ET.parse(out / "rounds.svg").getroot()
    assert svg.tag.endswith("svg")
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polyline")) == 4


def test_a_bad_population_file_exits_2_and_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[compute]\nstraggler_share = 3\n")
    result = dandelion("emulate", "--population", str(bad))
    assert result.returncode == 2
    assert "compute.straggler_share" in result.stderr
