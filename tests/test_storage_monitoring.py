"""The monitoring queries and admin tokens, the same on every backend."""

from __future__ import annotations

import pytest

from dandelion.storage import (
    ConflictError,
    ParticipationEvent,
    StateStore,
)


def test_event_histogram_buckets_and_filters(store: StateStore) -> None:
    events = [
        ParticipationEvent("w1", None, None, "connected", 100.0),
        ParticipationEvent("w2", None, None, "connected", 119.9),
        ParticipationEvent("w1", "t1", 1, "reported", 160.0),
        ParticipationEvent("w2", "t2", 1, "reported", 175.0),
        ParticipationEvent("w3", None, None, "connected", 30.0),  # before `since`
    ]
    store.record_events(events)
    assert store.event_histogram(since=60.0, bucket_s=60.0) == [
        (60.0, "connected", 2),
        (120.0, "reported", 2),
    ]
    assert store.event_histogram(since=0.0, bucket_s=60.0, task="t1") == [(120.0, "reported", 1)]
    with pytest.raises(ValueError, match="positive"):
        store.event_histogram(since=0.0, bucket_s=0)


def test_consent_counts(store: StateStore) -> None:
    assert store.consent_counts() == {}
    store.set_consent("w1", "opted_in", 1.0)
    store.set_consent("w2", "opted_in", 1.0)
    store.set_consent("w3", "opted_in", 1.0)
    store.set_consent("w3", "opted_out", 2.0)
    assert store.consent_counts() == {"opted_in": 2, "opted_out": 1}


def test_admin_tokens_by_hash(store: StateStore) -> None:
    store.add_admin_token("ops", "a" * 64, 5.0)
    store.add_admin_token("ci", "b" * 64, 6.0)
    assert store.admin_token_name("a" * 64) == "ops"
    assert store.admin_token_name("c" * 64) is None
    with pytest.raises(ConflictError):
        store.add_admin_token("ops", "d" * 64, 7.0)
    with pytest.raises(ConflictError):
        store.add_admin_token("other", "a" * 64, 7.0)
    assert store.list_admin_tokens() == [("ci", 6.0), ("ops", 5.0)]
    assert store.revoke_admin_token("ops") is True
    assert store.revoke_admin_token("ops") is False
    assert store.admin_token_name("a" * 64) is None
