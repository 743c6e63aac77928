"""Devices' data: the browser worker's own pipeline, the heterogeneity knob, the URL fast path."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from browser_worker.datasets import EPOCH
from dandelion.emulation.localdata import DataCache, SyntheticSource, TableSource, save_table
from dandelion.taskspec.objectives.revisit import FeatureConfig, _host_and_depth, extract_examples
from dandelion.taskspec.synthetic import SyntheticConfig, generate_history, user_profile


def _by_urlsplit(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", 0
    host = parts.hostname or ""
    return (host[4:] if host.startswith("www.") else host), len(
        [p for p in parts.path.split("/") if p]
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://site001.topic02.example/p1/p2",
        "https://WWW.Example.ORG/",
        "http://a.b//c///d",
        "https://host",
        "https://host/x?y=1#z",
        "https://user@host/a",
        "https://host:8080/a/b",
        "https://host/%7Euser/",
        "HTTPS://Host/x",
        "https://[::1]/x",
        "https://host/a b",
        "https://exa_mple.com/x",
    ],
)
def test_the_plain_url_fast_path_agrees_with_urlsplit(url: str) -> None:
    assert _host_and_depth(url) == _by_urlsplit(url)


def test_a_device_gets_what_the_browser_pipeline_makes_of_its_history() -> None:
    source = SyntheticSource(seed=2, num_buckets=64, history_days=9.0)
    user_seed = 2 * 1_000_003 + 7
    history = generate_history(user_seed, 9.0, SyntheticConfig(), EPOCH)
    expected = extract_examples(history, FeatureConfig(64, 7.0), EPOCH + 9 * 86400.0)
    assert list(source.local(7)) == expected
    assert len(expected) > 0


def test_heterogeneity_concentrates_interests() -> None:
    def top_share(alpha: float) -> float:
        config = SyntheticConfig(heterogeneity=alpha)
        return sum(max(user_profile(u, config).interests) for u in range(200)) / 200

    assert top_share(0.1) > 0.6 > top_share(10.0)


def test_cache_is_bounded_and_tables_round_trip(tmp_path: Path) -> None:
    source = SyntheticSource(seed=3, num_buckets=32, history_days=9.0, test_users=3)
    cache = DataCache(source, capacity=2)
    for device in (0, 1, 2, 0):
        cache.get(device)
    assert cache.built == 4  # device 0 was evicted by device 2, built again
    path = f"{tmp_path}/table.npz"
    users = [source.local(d) for d in range(3)]
    save_table(path, users, source.test_set(), source.num_features)
    table = TableSource(path)
    assert table.num_features == source.num_features
    assert [list(table.local(d)) for d in range(3)] == [list(u) for u in users]
