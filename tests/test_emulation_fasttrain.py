"""The vectorized trainer gives the browser worker's updates: parity with ``train_local``."""

from __future__ import annotations

import random

import numpy as np
import pytest

from browser_worker.training import Hyper, train_local
from dandelion.emulation.fasttrain import TrainJob, train_many
from dandelion.emulation.localdata import LocalData, SyntheticSource, pack
from dandelion.taskspec.models import Example, ModelSpec

#: Largest difference allowed between the two trainers' deltas, losses and norms. Both add in
#: the same order; they differ only where numpy's exp and libm's exp round differently.
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def users() -> list[LocalData]:
    source = SyntheticSource(seed=5, num_buckets=200, history_days=10.0)
    return [source.local(i) for i in range(12)]


@pytest.mark.parametrize(
    "hyper",
    [
        Hyper(0.3, 1, 16, 10.0),
        Hyper(0.5, 3, 4, 0.5, l2=0.01),  # several epochs, L2 decay, clipping that binds
        Hyper(0.1, 2, 1000, 100.0),  # one batch holds every example
    ],
)
def test_vectorized_updates_match_the_pure_python_worker(
    users: list[LocalData], hyper: Hyper
) -> None:
    spec = ModelSpec("logreg", SyntheticSource(seed=5, num_buckets=200).num_features)
    params = (np.random.default_rng(3).standard_normal(spec.param_count) * 0.2).astype(np.float32)
    jobs = [TrainJob(u, params, random.Random(f"w{i}").getstate()) for i, u in enumerate(users)]
    fast = train_many(spec, hyper, jobs)
    clipped_any = False
    for i, user in enumerate(users):
        pure = train_local(spec, params.tolist(), user, hyper, random.Random(f"w{i}"))
        dense = fast[i].dense(spec.param_count)
        assert np.max(np.abs(np.array(pure.clipped_delta) - np.array(dense.clipped_delta))) < 1e-6
        ours = np.zeros(spec.param_count)
        ours[fast[i].touched] = fast[i].clipped
        assert np.max(np.abs(np.array(pure.clipped_delta) - ours)) < TOLERANCE
        assert abs(pure.loss - fast[i].loss) < TOLERANCE
        assert abs(pure.norm - fast[i].norm) < TOLERANCE
        assert pure.accuracy == fast[i].accuracy
        assert pure.unclipped == fast[i].unclipped
        assert pure.num_examples == fast[i].num_examples == len(user)
        clipped_any |= not pure.unclipped
    assert clipped_any == (hyper.clip_norm < 1.0)


def test_results_do_not_depend_on_the_batch_a_job_is_trained_in(users: list[LocalData]) -> None:
    spec = ModelSpec("logreg", SyntheticSource(seed=5, num_buckets=200).num_features)
    params = np.zeros(spec.param_count, dtype=np.float32)
    hyper = Hyper(0.3, 2, 8, 10.0)
    jobs = [TrainJob(u, params, random.Random(i).getstate()) for i, u in enumerate(users)]
    together = train_many(spec, hyper, jobs)
    alone = [train_many(spec, hyper, [job])[0] for job in jobs]
    for a, b in zip(together, alone, strict=True):
        assert np.array_equal(a.touched, b.touched)
        assert np.array_equal(a.clipped, b.clipped)  # bit for bit: Ray shards change nothing
        assert a.loss == b.loss


def test_other_model_kinds_fall_back_to_the_pure_trainer() -> None:
    spec = ModelSpec("softmax", 6, num_classes=3)
    data = pack([Example((i % 6, 5), (1.0, 0.5), i % 3) for i in range(20)])
    params = np.zeros(spec.param_count, dtype=np.float32)
    hyper = Hyper(0.2, 2, 4, 5.0)
    fast = train_many(spec, hyper, [TrainJob(data, params, random.Random(1).getstate())])[0]
    pure = train_local(spec, params.tolist(), data, hyper, random.Random(1))
    ours = np.zeros(spec.param_count)
    ours[fast.touched] = fast.clipped
    assert np.allclose(ours, pure.clipped_delta, atol=TOLERANCE)


def test_local_data_reads_back_the_examples_it_was_made_from() -> None:
    examples = [Example((0, 3, 7), (0.5, 1.0, 1.0), 1), Example((2,), (0.25,), 0)]
    data = pack(examples)
    assert list(data) == examples
    assert len(data) == 2 and data[1] == examples[1]
