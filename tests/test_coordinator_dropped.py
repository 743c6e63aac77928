"""What a round's ``dropped`` is made of, counted at its close: workers that left, workers
still out (over-selected, slow or silent) and workers whose report was refused; and the
seeded entropy that makes an emulation's secrets and noise reproducible."""

from __future__ import annotations

import numpy as np

from dandelion.coordinator import Entropy, SeededEntropy

from .dp_helpers import dp_config, feed, new_round


def test_the_unreported_assignments_split_into_left_unfinished_and_rejected() -> None:
    rnd = new_round(dp_config(goal=10))
    for _ in range(3):
        feed(rnd, np.zeros(11, np.float32))  # three reports in the round's batch
    for worker in ("gone", "opted-out", "silent", "training", "refused"):
        rnd.assign(worker, 0.0)
    rnd.free("gone")  # its connection closed
    rnd.free("opted-out")
    rnd.free("silent", silent=True)  # past the report timeout: late, not gone
    rnd.refused("refused")  # its update failed the round's checks
    rnd.refused("stranger")  # never assigned: counted as refused, not as an assignment
    rnd.close()
    split = rnd.unreported(completed=True)
    assert split == {"left": 2, "unfinished": 2, "rejected": 1}
    assert sum(split.values()) == rnd.dropped == rnd.assigned - rnd.reported
    assert rnd.rejected == 2
    # Abandoned: the reports waiting in its last batch do not count, and were refused.
    assert rnd.unreported(completed=False) == {"left": 2, "unfinished": 2, "rejected": 4}


def test_a_released_worker_that_comes_back_and_leaves_again_has_left() -> None:
    rnd = new_round(dp_config(goal=10))
    rnd.assign("w", 0.0)
    rnd.free("w", silent=True)
    rnd.assign("w", 1.0)  # back, with the same nonce
    rnd.free("w")  # and gone
    rnd.close()
    assert rnd.unreported(completed=True) == {"left": 1, "unfinished": 0, "rejected": 0}


def test_seeded_entropy_repeats_itself_and_the_default_does_not() -> None:
    a, b, c = SeededEntropy(3), SeededEntropy(3), SeededEntropy(4)
    assert [a.round_secret() for _ in range(3)] == [b.round_secret() for _ in range(3)]
    assert a.task_key() == b.task_key() != c.task_key()
    assert np.array_equal(a.noise_generator().normal(size=4), b.noise_generator().normal(size=4))
    assert a.round_secret() != c.round_secret()
    assert Entropy().round_secret() != Entropy().round_secret()
