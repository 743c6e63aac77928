"""The ``[privacy]`` table of a task file: defaults, the noise split, errors naming the key."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dandelion.coordinator import TaskConfig, TaskConfigError, load_task_file
from dandelion.privacy import PrivacyConfig, PrivacyConfigError, default_delta


def dp_task(privacy: dict[str, Any], **server: Any) -> dict[str, Any]:
    return {
        "name": "dp",
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": 10},
        "hyper": {"clip_norm": 2.0},
        "server": server,
        "rounds": {"goal": 100},
        "privacy": privacy,
    }


BASE = {"population": 10_000, "noise_multiplier": 1.0, "epsilon": 8.0}


def test_defaults_are_resolved_from_the_round_plan() -> None:
    config = TaskConfig.from_dict(dp_task({**BASE, "clipping": "adaptive"}))
    p = config.privacy
    assert p is not None
    assert p.delta == pytest.approx(10_000**-1.1) == default_delta(10_000)
    assert p.delta < 1 / 10_000
    assert p.sampling_rate == pytest.approx(100 / 10_000)
    assert p.expected_reports == 100
    assert (p.target_quantile, p.clip_learning_rate) == (0.5, 0.2)
    assert p.bit_noise_std == pytest.approx(100 / 20)
    assert p.accountant == "pld"
    assert config.server.weighting == "uniform"
    assert config.clip_norm == 2.0  # the first round's C


def test_the_noise_is_split_between_bits_and_update() -> None:
    fixed = PrivacyConfig.from_dict(BASE, expected_reports=100)
    assert fixed.update_noise_multiplier == 1.0
    adaptive = PrivacyConfig.from_dict(
        {**BASE, "clipping": "adaptive", "bit_noise_std": 2.0}, expected_reports=100
    )
    z_delta = adaptive.update_noise_multiplier
    assert z_delta**-2 == pytest.approx(1.0**-2 - (2 * 2.0) ** -2)
    assert z_delta > 1.0


def test_the_config_round_trips_through_the_stored_dict() -> None:
    config = TaskConfig.from_dict(
        dp_task({**BASE, "clipping": "adaptive", "accountant": "rdp", "delta": 1e-6})
    )
    again = TaskConfig.from_dict(config.to_dict())
    assert again == config
    assert again.to_dict()["privacy"]["delta"] == 1e-6
    plain = TaskConfig.from_dict({k: v for k, v in dp_task(BASE).items() if k != "privacy"})
    assert plain.privacy is None and "privacy" not in plain.to_dict()


@pytest.mark.parametrize(
    ("privacy", "field"),
    [
        ({"noise_multiplier": 1.0, "epsilon": 1.0}, "privacy.population"),
        ({**BASE, "population": 50}, "privacy.population"),
        ({**BASE, "population": 1.5e4}, "privacy.population"),
        ({**BASE, "noise_multiplier": 0}, "privacy.noise_multiplier"),
        ({**BASE, "noise_multiplier": "1"}, "privacy.noise_multiplier"),
        ({k: v for k, v in BASE.items() if k != "epsilon"}, "privacy.epsilon"),
        ({**BASE, "epsilon": -1}, "privacy.epsilon"),
        ({**BASE, "epsilon": math.inf}, "privacy.epsilon"),
        ({**BASE, "delta": 1e-3}, "privacy.delta"),
        ({**BASE, "delta": 0}, "privacy.delta"),
        ({**BASE, "clipping": "sometimes"}, "privacy.clipping"),
        ({**BASE, "accountant": "moments"}, "privacy.accountant"),
        ({**BASE, "target_quantile": 0.5}, "privacy.target_quantile"),
        ({**BASE, "clipping": "adaptive", "target_quantile": 1.0}, "privacy.target_quantile"),
        ({**BASE, "clipping": "adaptive", "clip_learning_rate": 0}, "privacy.clip_learning_rate"),
        ({**BASE, "clipping": "adaptive", "bit_noise_std": 0.4}, "privacy.bit_noise_std"),
        ({**BASE, "sigma": 1.0}, "privacy.sigma"),
    ],
)
def test_bad_privacy_config_names_the_field(privacy: dict[str, Any], field: str) -> None:
    with pytest.raises(TaskConfigError) as caught:
        TaskConfig.from_dict(dp_task(privacy))
    assert str(caught.value).startswith(field + ":"), str(caught.value)


def test_example_weighting_is_refused_under_dp() -> None:
    with pytest.raises(TaskConfigError, match=r"^server\.weighting:"):
        TaskConfig.from_dict(dp_task(BASE, weighting="examples"))
    assert TaskConfig.from_dict(dp_task(BASE, weighting="uniform")).privacy is not None


def test_privacy_must_be_a_table() -> None:
    raw = dp_task(BASE)
    raw["privacy"] = 3
    with pytest.raises(TaskConfigError, match=r"^privacy: must be a table"):
        TaskConfig.from_dict(raw)


def test_a_goal_larger_than_the_population_is_refused_directly() -> None:
    with pytest.raises(PrivacyConfigError, match=r"^population"):
        PrivacyConfig.from_dict(BASE, expected_reports=20_000)


TOML = """
name = "dp"
objective = "page_examples"
[model]
kind = "logreg"
num_features = 10
[rounds]
goal = 100
[server]
weighting = "uniform"
[privacy]
population = 10000
noise_multiplier = {z}
epsilon = 4.0
"""


def test_a_task_file_with_privacy_loads_and_a_bad_one_is_refused_by_the_cli(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(TOML.format(z="1.2"))
    assert load_task_file(good).privacy is not None
    bad = tmp_path / "bad.toml"
    bad.write_text(TOML.format(z="-1.0"))
    db = str(tmp_path / "s.db")
    result = subprocess.run(
        [sys.executable, "-m", "dandelion", "task", "create", str(bad), "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "privacy.noise_multiplier" in result.stderr


def test_the_dp_example_task_file_loads_as_documented() -> None:
    config = load_task_file(Path(__file__).resolve().parent.parent / "examples/revisit-7d-dp.toml")
    p = config.privacy
    assert p is not None and p.adaptive and p.accountant == "pld"
    assert p.sampling_rate == pytest.approx(0.01)
    assert p.delta == pytest.approx(100_000**-1.1)
    assert config.server.weighting == "uniform"
    assert p.mechanism == "poisson" and p.poisson


def test_the_dp_ftrl_example_task_file_loads_as_documented() -> None:
    root = Path(__file__).resolve().parent.parent
    config = load_task_file(root / "examples/revisit-7d-dp-ftrl.toml")
    p = config.privacy
    assert p is not None and p.ftrl and not p.adaptive and p.accountant == "rdp"
    assert p.min_separation == 8 and p.noise_multiplier == 3.0
    assert p.delta == pytest.approx(20_000**-1.1)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"mechanism": "dp_ftrl"}, "min_separation"),
        ({"mechanism": "dp_ftrl", "min_separation": 0}, "min_separation"),
        ({"mechanism": "dp_ftrl", "min_separation": 4, "clipping": "adaptive"}, "clipping"),
        ({"mechanism": "dp_ftrl", "min_separation": 4, "accountant": "pld"}, "accountant"),
        ({"min_separation": 4}, "min_separation"),
        ({"mechanism": "shuffle"}, "mechanism"),
    ],
)
def test_a_mechanism_that_cannot_hold_is_refused_by_name(extra: dict[str, Any], key: str) -> None:
    from dandelion.privacy import PrivacyConfig, PrivacyConfigError

    raw = {"population": 1000, "noise_multiplier": 2.0, "epsilon": 4.0, **extra}
    with pytest.raises(PrivacyConfigError, match=f"^{key}:"):
        PrivacyConfig.from_dict(raw, expected_reports=100)
