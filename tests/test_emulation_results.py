"""Self-describing results: the same seed gives the same result files byte for byte, which
say how the run was made (seed, population, task, data, code) and what became of each round
(ε, what ``dropped`` is made of); the wall clock stays in files of its own; a population that
cannot meet its task is warned of at the start, and a run of abandoned rounds stops."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dandelion.coordinator import TaskConfig, load_task_file
from dandelion.emulation import EmulateOptions, PopulationConfig, RunResult, emulate, write_results
from dandelion.emulation.feasibility import ABANDONED_IN_A_ROW, start_check
from dandelion.emulation.localdata import SyntheticSource, TableSource, save_table
from dandelion.emulation.plan import make_plan
from dandelion.emulation.population import default_task
from dandelion.emulation.progress import Progress
from dandelion.emulation.provenance import run_info
from dandelion.emulation.results import RoundRecord
from dandelion.export import read_safetensors
from dandelion.privacy import PrivacyLedger

ROOT = Path(__file__).resolve().parent.parent
SAME_BYTES = ("result.json", "rounds.csv", "model.safetensors", "rounds.svg")
CONFIG = PopulationConfig(size=200, seed=11, rounds=2, history_days=9.0, test_users=10)


def _task(private: bool) -> dict[str, Any]:
    task = default_task(20, 2)
    task["features"] = {"num_buckets": 64}
    if private:
        task["server"] = {"optimizer": "fedavg", "weighting": "uniform"}
        task["rounds"].update(min_reports=10, deadline_s=300.0)
        task["privacy"] = {"population": 200, "noise_multiplier": 1.0, "epsilon": 50.0}
    return task


def _config(private: bool) -> PopulationConfig:
    # Poisson participation: q = 20 / 200 of the devices checking in, every one online.
    return CONFIG.replace(availability="always") if private else CONFIG


def _run_into(folder: Path, config: PopulationConfig, task: dict[str, Any]) -> RunResult:
    result = emulate(config, EmulateOptions(progress=False), task=task)
    write_results(result, folder)
    return result


@pytest.mark.parametrize("private", [False, True], ids=["plain", "private"])
def test_the_same_seed_gives_byte_identical_result_files(tmp_path: Path, private: bool) -> None:
    config, task = _config(private), _task(private)
    first = _run_into(tmp_path / "a" / "deeper", config, task)
    _run_into(tmp_path / "b", config, task)
    a, b = tmp_path / "a" / "deeper", tmp_path / "b"
    for name in SAME_BYTES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert first.summary()["rounds"] == 2 and first.warnings == []

    body = json.loads((a / "result.json").read_text())
    assert body["format"] == 1 and body["seed"] == 11 and body["mode"] == "inprocess"
    assert set(body["code"]) == {"version", "commit", "dirty"}
    assert body["population"]["population"]["size"] == 200
    assert body["population"]["availability"]["mode"] == config.availability
    assert body["task"]["rounds"]["goal"] == 20 and body["data"] == {"kind": "synthetic"}
    assert body["files"]["model"] == "model.safetensors"
    assert body["stopped"] == "rounds_completed"
    for text in ((a / "result.json").read_text(), (a / "rounds.csv").read_text()):
        assert str(tmp_path) not in text and "wall" not in text
    for r in body["per_round"]:
        assert r["left"] + r["unfinished"] + r["rejected"] == r["dropped"]
    epsilons = [r["epsilon"] for r in body["per_round"]]
    if private:
        assert all(e is not None and e > 0 for e in epsilons)
        # The coordinator's own ledger after each released round (what `task show` says).
        privacy = TaskConfig.from_dict(body["task"]).privacy
        assert privacy is not None
        ledger = PrivacyLedger(privacy)
        ledger.events = [ledger.next_event()]
        assert ledger.check_next().after == epsilons[-1]
        assert epsilons == sorted(epsilons) and body["epsilon"] == epsilons[-1]
        assert "privacy" in body["task"]
    else:
        assert epsilons == [None, None] and body["epsilon"] is None

    rows = (a / "rounds.csv").read_text().splitlines()
    head = rows[0].split(",")
    assert {"epsilon", "left", "unfinished", "rejected", "seed", "code_version"} <= set(head)
    assert len(rows) == 1 + len(body["per_round"])
    assert all(row.split(",")[head.index("seed")] == "11" for row in rows[1:])

    params, meta = read_safetensors((a / "model.safetensors").read_bytes())
    assert params.tolist() == first.params.astype("float32").tolist()
    assert meta["emulation_seed"] == "11" and json.loads(meta["task_config"]) == body["task"]
    assert meta["version"] == str(first.model_version) == "2"

    timing = json.loads((a / "timing.json").read_text())
    assert timing["wall_s"] > 0 and timing["host"]["cpu_count"] >= 1
    assert (a / "timing.csv").read_text().splitlines()[0] == "round,status,virtual_s,wall_s"

    if not private:
        other = _run_into(tmp_path / "c", config.replace(seed=12), task)
        assert other.summary()["rounds"] == 2
        assert (tmp_path / "c" / "result.json").read_bytes() != (a / "result.json").read_bytes()


def test_a_small_always_online_population_runs_the_same_however_fast_the_machine(
    tmp_path: Path,
) -> None:
    """Few devices checking in often: the coordinator's per-connection rate limit runs on the
    emulation's virtual clock, so no message is dropped as too fast for the wall clock (which
    made runs of one seed differ with the machine's speed)."""
    config = PopulationConfig(
        size=7,
        seed=1,
        rounds=40,
        history_days=9.0,
        test_users=5,
        availability="always",
        dropout=0.0,
        straggler_share=0.0,
    )
    task = default_task(3, 40)
    runs = [_run_into(tmp_path / name, config, task) for name in ("a", "b")]
    for name in SAME_BYTES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    counters = runs[0].summary()["counters"]
    assert counters.get("protocol_error", 0) == 0, counters
    assert runs[0].summary()["rounds"] == 40


def test_a_data_table_is_named_by_its_digest_not_its_path(tmp_path: Path) -> None:
    source = SyntheticSource(seed=3, num_buckets=32, history_days=9.0, test_users=3)
    users = [source.local(d) for d in range(4)]
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
        save_table(tmp_path / where / "t.npz", users, source.test_set(), source.num_features)
    task = default_task(2, 1)
    task["features"] = {"num_buckets": 32}
    infos = []
    for where in ("one", "two"):
        table = TableSource(tmp_path / "one" / "t.npz")
        if where == "two":
            shutil.copy(tmp_path / "one" / "t.npz", tmp_path / "two" / "copy.npz")
            table = TableSource(tmp_path / "two" / "copy.npz")
        plan = make_plan(PopulationConfig(size=4, rounds=1), task=task, source=table)
        infos.append(run_info(plan, {}))
    assert infos[0] == infos[1]
    assert infos[0].data["kind"] == "table" and len(infos[0].data["sha256"]) == 64
    assert str(tmp_path) not in json.dumps(infos[0].data)


def test_the_dp_example_with_a_small_population_is_warned_of_and_stopped() -> None:
    task = load_task_file(ROOT / "examples" / "revisit-7d-dp.toml").to_dict()
    config = PopulationConfig(size=200, seed=5, rounds=2, history_days=9.0, test_users=10)
    result = emulate(config, EmulateOptions(progress=False), task=task)
    warning = result.warnings[0]
    assert "rounds.min_reports = 800" in warning and "Emulate" in warning, warning
    assert result.stopped == "rounds_abandoned"
    assert len(result.rounds) == ABANDONED_IN_A_ROW
    assert all(r.status == "abandoned" for r in result.rounds)
    assert "rounds in a row were abandoned" in result.warnings[-1]
    assert all(r.epsilon == 0.0 for r in result.rounds)  # nothing released, nothing spent


def test_a_population_smaller_than_the_goal_is_warned_of_and_stopped() -> None:
    task = default_task(100, 2)  # min_reports 80, from 50 devices
    task["features"] = {"num_buckets": 32}
    config = PopulationConfig(size=50, seed=6, rounds=2, history_days=9.0, test_users=5)
    result = emulate(config, EmulateOptions(progress=False), task=task)
    assert len(result.warnings) == 2, result.warnings
    assert "rounds.min_reports = 80" in result.warnings[0]
    assert "Emulate" in result.warnings[0] and "--cohort" in result.warnings[0]
    assert result.stopped == "rounds_abandoned" and result.summary()["rounds"] == 0


def test_a_budget_that_does_not_last_the_rounds_is_warned_of() -> None:
    task = _task(private=True)
    task["privacy"]["epsilon"] = 1.0
    plan = make_plan(_config(private=True).replace(rounds=50), task=task)
    check = start_check(plan)
    assert not check.doomed  # the rounds can run; the budget ends them early
    [warning] = check.warnings
    assert "privacy.epsilon = 1 lasts" in warning and "budget_exhausted" in warning
    assert start_check(make_plan(_config(private=True), task=_task(True))).warnings == []


def _record(n: int, status: str = "completed") -> RoundRecord:
    return RoundRecord(n, status, 10, 8, 2, 0, 2, 0, 0.8, 0.4, 0.5, None, 60.0 * n, 5, 0.1 * n)


def test_progress_off_a_terminal_is_a_line_per_round_at_most_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    stream = io.StringIO()
    with Progress(50, stream=stream, every_s=3600.0) as progress:
        for n in range(1, 51):
            progress.update(n - 1 if n % 7 == 0 else n, _record(n))
            progress.status("idle")
        progress.say("warning: something")
    lines = stream.getvalue().splitlines()
    # The first round, the last, the warning: not one line per update (nor per frame).
    assert len(lines) == 3, lines
    assert lines[0].startswith("1/50 rounds, round 1 completed: 8/10 reported")
    assert lines[1].startswith("50/50 rounds, round 50 completed")
    assert lines[2] == "warning: something"
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
