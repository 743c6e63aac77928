"""Pace steering windows and task configuration checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dandelion.coordinator import PaceSteering, TaskConfig, TaskConfigError, load_task_file

ROOT = Path(__file__).resolve().parent.parent


def test_windows_are_never_zero_width_and_widen_with_demand() -> None:
    pace = PaceSteering(min_s=1.0, max_s=600.0, target_rate=10.0)
    first = pace.window(0.0)
    assert first.max_s - first.min_s >= 1.0
    for _ in range(2000):
        last = pace.window(0.0)
    assert last.max_s - last.min_s > 100.0  # 2000 waiting workers at 10/s: spread them out
    assert last.max_s <= 600.0


def test_demand_decays_with_time() -> None:
    pace = PaceSteering(min_s=1.0, max_s=100.0, target_rate=1.0)
    for _ in range(500):
        pace.window(0.0)
    busy = pace.spread(0.0)
    assert pace.spread(10_000.0) < busy / 10


def test_window_starts_when_the_work_is_expected() -> None:
    pace = PaceSteering(min_s=1.0, max_s=600.0, target_rate=10.0)
    window = pace.window(100.0, not_before=160.0)
    assert window.min_s == pytest.approx(60.0)
    assert window.max_s >= 61.0


def test_example_task_file_loads_and_round_trips() -> None:
    config = load_task_file(ROOT / "examples" / "revisit-7d.toml")
    assert config.model.param_count == 1045
    assert config.rounds.max_assigned == 130
    assert config.rounds.minimum == 80
    assert TaskConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"hyper": {"epochs": 0}}, "hyper.epochs"),
        ({"hyper": {"momentum": 0.9}}, "hyper.momentum: unknown key"),
        ({"rounds": {"goal": 5, "min_reports": 6}}, "min_reports"),
        ({"rounds": {"over_selection": 0.5}}, "over_selection"),
        ({"server": {"optimizer": "sgd"}}, "server.optimizer"),
        ({"server": {"optimizer": "fedavg", "momentum": 0.9}}, "server"),
        ({"model": {"kind": "transformer", "num_features": 3}}, "model"),
        ({"update_dtype": "float64"}, "update_dtype"),
        ({"eligibility": {"wifi": True}}, "eligibility"),
    ],
)
def test_bad_task_files_name_the_field(change: dict[str, object], fragment: str) -> None:
    raw: dict[str, object] = {
        "name": "ok",
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": 3},
    }
    raw.update(change)
    with pytest.raises(TaskConfigError, match=fragment):
        TaskConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("hyper", "learning_rate", 1e7),
        ("hyper", "clip_norm", 1e10),
        ("rounds", "deadline_s", 4e7),
        ("server", "server_lr", float("inf")),
    ],
)
def test_a_task_beyond_the_wire_contract_is_refused_naming_the_field(
    section: str, key: str, value: float
) -> None:
    raw: dict[str, Any] = {
        "name": "t",
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": 3},
        section: {key: value},
    }
    with pytest.raises(TaskConfigError, match=f"{section}.{key}"):
        TaskConfig.from_dict(raw)


def test_settings_sent_to_workers_stay_inside_the_contract() -> None:
    from dandelion.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="heartbeat_s"):
        load_settings(environ={}, overrides={"heartbeat_s": 1e6})
    with pytest.raises(SettingsError, match="max_message_bytes"):
        load_settings(environ={}, overrides={"max_message_bytes": 2**31})
