"""Population files: every field checked by name; behaviour deterministic and diurnal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dandelion.emulation import PopulationConfig, PopulationConfigError, load_population
from dandelion.emulation.behaviour import Behaviour
from dandelion.emulation.population import Dist


def test_toml_and_json_files_load_the_same(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(
        "[population]\nsize = 500\nseed = 3\nopt_out_per_day = 0.1\n"
        "[compute]\nexamples_per_s = {median = 5000, sigma = 0.5}\n"
        "[availability]\nmode = 'always'\n[run]\nrounds = 4\n"
    )
    config = load_population(toml)
    assert (config.size, config.seed, config.rounds, config.availability) == (500, 3, 4, "always")
    assert config.examples_per_s == Dist(5000.0, 0.5)
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(config.to_dict()))
    assert load_population(as_json) == config


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[availability]\npeak_online = 1.5\n", "availability.peak_online"),
        ("[population]\nsize = 0\n", "population.size"),
        ("[compute]\nexamples_per_s = {median = -1}\n", "compute.examples_per_s.median"),
        ("[compute]\nstartup_s = {mean = 3}\n", "compute.startup_s"),
        ("[availability]\nprofile = [1, 2]\n", "availability.profile"),
        ("[churn]\ndropout = 'often'\n", "churn.dropout"),
        ("[network]\nbandwidth = 3\n", "network.bandwidth: unknown key"),
        ("[people]\nsize = 3\n", "people: unknown key"),
        ("[availability]\nmode = 'sometimes'\n", "availability.mode"),
    ],
)
def test_a_bad_field_is_named(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PopulationConfigError, match=field.replace(".", r"\.")):
        load_population(path)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[population\n")
    with pytest.raises(PopulationConfigError, match=r"broken\.toml"):
        load_population(path)


def test_behaviour_is_a_function_of_the_device_alone() -> None:
    a = Behaviour(PopulationConfig(seed=9), epoch=0.0)
    b = Behaviour(PopulationConfig(seed=9), epoch=0.0)
    c = Behaviour(PopulationConfig(seed=10), epoch=0.0)
    draws = [(a.next_online(d, 0.0), a.startup_s(d, 1), a.tz_offset_min(d)) for d in range(50)]
    assert draws == [
        (b.next_online(d, 0.0), b.startup_s(d, 1), b.tz_offset_min(d)) for d in range(50)
    ]
    assert draws != [
        (c.next_online(d, 0.0), c.startup_s(d, 1), c.tz_offset_min(d)) for d in range(50)
    ]


def test_availability_follows_local_time_of_day() -> None:
    # Everyone in UTC: far more devices online in the evening peak (20:00) than at 04:00.
    config = PopulationConfig(time_zones=(0,), peak_online=0.8, activity_sigma=0.0)
    behaviour = Behaviour(config, epoch=0.0)

    def online_at(hour: float) -> int:
        t = 10 * 86400.0 + hour * 3600.0
        return sum(behaviour.next_online(d, t) == t for d in range(2000))

    evening, night = online_at(20.5), online_at(4.5)
    assert evening > 1200 > 200 > night
    for d in range(50):
        start = behaviour.next_online(d, 0.0)
        assert behaviour.online_until(d, start) > start


def test_dropouts_and_stragglers_have_the_configured_shares() -> None:
    config = PopulationConfig(dropout=0.2, straggler_share=0.1, straggler_slowdown=50.0)
    behaviour = Behaviour(config, epoch=0.0)
    drops = sum(behaviour.dropout_at(d, 1) is not None for d in range(5000))
    assert 850 < drops < 1150
    times = sorted(behaviour.train_s(d, 1, 100, 1) for d in range(5000))
    assert times[-1] > 20 * times[len(times) // 2]  # the slow tail is there


def test_the_example_population_file_is_valid() -> None:
    from dandelion.emulation.plan import make_plan

    root = Path(__file__).resolve().parent.parent
    config = load_population(root / "examples" / "population.toml")
    plan = make_plan(config)
    assert (config.size, config.rounds, plan.task.rounds.goal) == (100_000, 50, 1000)
    assert plan.task.model.num_features == plan.source.num_features
