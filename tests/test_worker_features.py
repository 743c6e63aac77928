"""Browsing signals -> examples: labels, stable hashing, and nothing readable leaves."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest

from browser_worker.datasets import make_population, revisit_dataset
from dandelion.taskspec.objectives.revisit import (
    NUM_DENSE,
    FeatureConfig,
    VisitRecord,
    extract_examples,
    host_bucket,
    host_of,
    num_features,
)
from dandelion.taskspec.registry import examples_for
from dandelion.taskspec.synthetic import SyntheticConfig, generate_history, user_profile

DAY = 86400.0
T0 = 1_767_571_200.0  # a Monday, 00:00 UTC


def visit(host: str, day: float, **kw: object) -> VisitRecord:
    return VisitRecord(f"https://www.{host}/a/b", f"Title of {host}", T0 + day * DAY, **kw)  # type: ignore[arg-type]


def test_revisit_labels_follow_the_horizon() -> None:
    config = FeatureConfig(num_buckets=16, horizon_days=7)
    visits = [
        visit("a.example", 0),
        visit("a.example", 6),  # revisit after 6 days: the first visit is labelled 1
        visit("b.example", 0.5),
        visit("b.example", 8.5),  # after 8 days: b's first visit is labelled 0
        visit("c.example", 20),  # its horizon ends after "now": no example
    ]
    examples = extract_examples(visits, config, now=T0 + 22 * DAY)
    assert [e.label for e in examples] == [1, 0, 0, 0]
    assert len(examples) == 4


def test_hashing_is_stable_and_urls_never_appear() -> None:
    assert host_of("https://www.Example.org:8080/x?y") == "example.org"
    assert host_bucket("example.org", 1024) == 548  # a change of hashing must fail this test
    config = FeatureConfig(num_buckets=1024)
    examples = extract_examples([visit("secret.example", 0)], config, now=T0 + 30 * DAY)
    (ex,) = examples
    assert ex.indices[-1] == NUM_DENSE + host_bucket("secret.example", 1024)
    assert all(isinstance(v, float) for v in ex.values)
    assert "secret" not in repr(ex)
    assert max(ex.indices) < num_features(config)


def test_time_of_day_uses_local_time() -> None:
    config = FeatureConfig(num_buckets=4)
    utc = extract_examples([visit("a.example", 0.25)], config, now=T0 + 30 * DAY)[0]
    shifted = extract_examples(
        [visit("a.example", 0.25, tz_offset_min=360)], config, now=T0 + 30 * DAY
    )[0]
    assert utc.values[0] != shifted.values[0]  # 06:00 vs 12:00 local


def test_synthetic_history_is_deterministic_and_zipf_like() -> None:
    config = SyntheticConfig()
    a = generate_history(42, 28, config, T0)
    assert a == generate_history(42, 28, config, T0)
    assert a != generate_history(43, 28, config, T0)
    counts: dict[str, int] = {}
    for user in range(30):
        for v in generate_history(user, 14, SyntheticConfig(habit_share=0.0), T0):
            counts[host_of(v.url)] = counts.get(host_of(v.url), 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[0] > 10 * ranked[len(ranked) // 2]


def test_heterogeneity_knob_changes_how_alike_users_are() -> None:
    def spread(alpha: float) -> float:
        config = SyntheticConfig(heterogeneity=alpha)
        profiles = [user_profile(u, config).interests for u in range(40)]
        mean = [sum(p[k] for p in profiles) / len(profiles) for k in range(config.categories)]
        # mean total-variation distance of users from the population's mixture
        return sum(0.5 * sum(abs(p[k] - mean[k]) for k in range(len(mean))) for p in profiles) / 40

    assert spread(0.1) > 2 * spread(10.0)


def test_sessions_peak_in_the_local_evening() -> None:
    hours = [0] * 24
    for user in range(20):
        for v in generate_history(user, 14, SyntheticConfig(), T0):
            local = (v.visit_time + v.tz_offset_min * 60) % DAY
            hours[int(local // 3600)] += 1
    assert max(range(24), key=hours.__getitem__) in range(18, 23)
    assert hours[20] > 4 * hours[3]


def test_population_and_objectives() -> None:
    pop = make_population(4, seed=1, heterogeneity=0.5, days=21, test_users=2)
    assert len(pop.train) == 4
    assert all(pop.train) and pop.test
    labels = {e.label for e in pop.test}
    assert labels == {0, 1}
    assert pop.spec.num_features == num_features(pop.feature_config)
    history = generate_history(5, 21, SyntheticConfig(), T0)
    built = examples_for(history, "revisit_7d", {"num_buckets": 1024}, T0 + 21 * DAY)
    assert built == revisit_dataset(5, days=21)


def _readme_vector() -> list[str]:
    readme = (Path(__file__).resolve().parent.parent / "schemas" / "README.md").read_text()
    section = readme.split("## The revisit_7d objective", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def test_the_contracts_revisit_test_vector_is_what_the_code_computes() -> None:
    lines = _readme_vector()
    head = re.fullmatch(r"now (\d+), num_buckets (\d+), horizon_days (\d+)", lines[0])
    assert head is not None, lines[0]
    now, buckets, horizon = (int(g) for g in head.groups())
    config = FeatureConfig(num_buckets=buckets, horizon_days=horizon)
    visits, hosts, examples = [], 0, {}
    for line in lines[1:]:
        if m := re.fullmatch(
            r"visit \d+: t (\d+), tz_offset_min (-?\d+), transition (\w+), url (\S+)", line
        ):
            t, tz, transition, url = m.groups()
            visits.append(VisitRecord(url, "", float(t), transition, tz_offset_min=int(tz)))
        elif m := re.fullmatch(r'host_of\("([^"]+)"\) = "([^"]*)"', line):
            assert host_of(m[1]) == m[2], line
        elif m := re.fullmatch(
            r'host "([^"]+)": blake2b-64 ([0-9a-f]{16}), little-endian (\d+), bucket (\d+)', line
        ):
            digest = hashlib.blake2b(m[1].encode(), digest_size=8).digest()
            assert digest.hex() == m[2], line
            assert int.from_bytes(digest, "little") == int(m[3]), line
            assert host_bucket(m[1], buckets) == int(m[4]), line
            hosts += 1
        elif m := re.fullmatch(
            r"example (\d+): label (\d), indices (\[.*\]), values (\[.*\])", line
        ):
            examples[int(m[1])] = (int(m[2]), json.loads(m[3]), json.loads(m[4]))
        else:
            raise AssertionError(f"unrecognised test vector line: {line}")
    assert len(visits) == 3 and hosts == 2 and len(examples) == 3
    got = extract_examples(visits, config, float(now))
    assert len(got) == len(examples)
    for n, ex in enumerate(got, 1):
        label, indices, values = examples[n]
        assert ex.label == label, n
        assert list(ex.indices) == indices, n
        assert list(ex.values) == pytest.approx(values, abs=5e-7), n
        assert max(ex.indices) < num_features(config) == NUM_DENSE + buckets


def test_visits_at_the_same_instant_are_zero_hours_apart() -> None:
    config = FeatureConfig(num_buckets=8)
    visits = [visit("a.example", 0), visit("a.example", 0), visit("a.example", 0.5)]
    examples = extract_examples(visits, config, now=T0 + 30 * DAY)
    assert [e.values[6] for e in examples[:2]] == [0.0, 0.0]  # hours since the previous visit
    assert examples[2].values[6] == pytest.approx(math.log1p(12) / 7)
    assert [e.label for e in examples] == [1, 1, 0]
