"""The task file's ``[secure_aggregation]`` table: defaults at the round's n, errors naming the
key, what it rules out, and that a task with it is created and edited in like any other (its
rounds run secure: tests/test_secagg_live.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dandelion.coordinator import TaskConfig, TaskConfigError, create_task, load_task_file
from dandelion.coordinator.secure_config import SecureAggregationPlan
from dandelion.coordinator.taskchanges import edit_task
from dandelion.storage import SQLiteStore


def secure_task(table: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "sec",
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": 10},
        "hyper": {"clip_norm": 2.0},
        "rounds": {"goal": 1000, "over_selection": 1.0},
        **top,
    }
    if table is not None:
        raw["secure_aggregation"] = table
    return raw


def test_an_empty_table_takes_the_protocol_defaults_at_the_round_size() -> None:
    config = TaskConfig.from_dict(secure_task({}))
    plan = config.secure_aggregation
    assert plan == SecureAggregationPlan()
    assert config.server.weighting == "uniform"
    params = plan.params(1000, config.model.param_count, config.clip_norm)
    assert (params.degree, params.threshold, params.min_survivors) == (20, 11, 11)
    assert params.scale_bits == 20  # the largest f with 1000 * (2 * 2^f + 1/2) < 2^31
    assert params.timeouts.masked_s == 120.0
    assert TaskConfig.from_dict(config.to_dict()) == config
    assert TaskConfig.from_dict(secure_task()).secure_aggregation is None


def test_set_values_are_kept_and_reach_the_round() -> None:
    table = {"degree": 30, "threshold": 20, "scale_bits": 12, "masked_timeout_s": 600}
    config = TaskConfig.from_dict(secure_task(table))
    plan = config.secure_aggregation
    assert plan is not None
    assert plan.to_dict()["degree"] == 30
    params = plan.params(1000, 11, 2.0)
    assert (params.degree, params.threshold, params.scale_bits) == (30, 20, 12)
    assert params.min_survivors == 20
    assert params.timeouts.masked_s == 600.0
    assert TaskConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (secure_task({"degre": 10}), r"secure_aggregation\.degre: unknown key"),
        (secure_task({"degree": 9}), "degree 9 must be even"),
        (secure_task({"threshold": 5}), r"threshold 5 must be in \(10, 20\]"),
        (secure_task({"scale_bits": 21}), "can wrap around"),
        (secure_task({"degree": -2}), "a non-negative integer"),
        (secure_task({"share_timeout_s": 0}), r"share_timeout_s: a number of seconds"),
        (secure_task({"min_survivors": 5000}), r"min_survivors must be in \[1, 1000\]"),
        (secure_task({"degree": 1000}), r"degree 1000 must be even in \[2, 998\] or 999"),
        (secure_task([]), "secure_aggregation: must be a table"),  # type: ignore[arg-type]
        (secure_task({}, update_dtype="float16"), "update_dtype: float32 with"),
        (secure_task({}, server={"weighting": "examples"}), "server.weighting"),
        (
            secure_task(
                {},
                privacy={
                    "population": 100_000,
                    "noise_multiplier": 1.0,
                    "epsilon": 8.0,
                    "clipping": "adaptive",
                },
            ),
            "privacy.clipping",
        ),
    ],
)
def test_what_cannot_run_is_refused_naming_the_key(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(TaskConfigError, match=match):
        TaskConfig.from_dict(raw)


def test_a_fixed_threshold_must_hold_at_the_smallest_round_too() -> None:
    # t = 11 fits the default degree 20 at n = 1000, but min_survivors = 11 participants have
    # a complete graph of degree 10, where t = 11 cannot be.
    with pytest.raises(TaskConfigError, match="threshold 11"):
        TaskConfig.from_dict(secure_task({"threshold": 11}))


def test_with_fixed_dp_the_table_is_taken() -> None:
    privacy = {"population": 100_000, "noise_multiplier": 1.0, "epsilon": 8.0}
    config = TaskConfig.from_dict(secure_task({}, privacy=privacy))
    assert config.privacy is not None
    assert config.secure_aggregation is not None


def test_a_task_with_the_table_is_created_and_edited_in(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "state.db"))
    secure = TaskConfig.from_dict(secure_task({}))
    create_task(store, secure, 1.0)
    record = store.get_task("sec")
    assert record is not None
    assert TaskConfig.from_dict(record.config).secure_aggregation == SecureAggregationPlan()
    plain = TaskConfig.from_dict(secure_task(name="plain"))
    create_task(store, plain, 1.0)
    edit_task(store, "plain", TaskConfig.from_dict(secure_task({}, name="plain")), 2.0)
    assert len(store.task_log("plain")) == 2


TOML = """
name = "sec"
objective = "page_examples"
[model]
kind = "logreg"
num_features = 10
[rounds]
goal = 100
[secure_aggregation]
degree = {degree}
"""


def test_task_check_validates_the_table(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(TOML.format(degree=14))
    bad.write_text(TOML.format(degree=13))
    assert load_task_file(good).secure_aggregation == SecureAggregationPlan(degree=14)
    run = [sys.executable, "-m", "dandelion", "task", "check"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "degree 13 must be even" in refused.stderr


def test_the_emulator_refuses_a_secure_task_naming_the_table() -> None:
    from dandelion.emulation import PopulationConfig, PopulationConfigError
    from dandelion.emulation.plan import make_plan

    raw = secure_task({}, rounds={"goal": 10, "over_selection": 1.0})
    with pytest.raises(PopulationConfigError, match=r"task\.secure_aggregation: the emulator"):
        make_plan(PopulationConfig(size=20), task=raw)
