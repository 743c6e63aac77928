"""The Ray backend: the population's data and training spread over Ray actors.

``K`` actors each own the devices whose number is ``k`` modulo ``K``: they build those devices'
examples (from the same ``DataSource``, kept in their own bounded cache) and train their share
of every batch with ``train_many``. The coordinator, the sessions and the virtual clock stay in
the driver, so the rounds are the same rounds as in one process and the final model is the
same: training is a pure function of (data, received model, the worker's random state).

``ray.init()`` starts a local cluster; with ``address`` (``"auto"`` or ``ray://HOST:10001``)
the actors go to an existing cluster, one or many machines (see docs/emulation.md). Needs the
optional extra: ``pip install 'dandelion-fl[ray]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from browser_worker.training import Hyper
from dandelion.taskspec.models import ModelSpec

from .fasttrain import SparseResult
from .localdata import DataCache, DataSource
from .trainer import Backend, Collect, Item, gather, shards, train_items

__all__ = ["RayBackend"]


class _Shard:
    """The body of one actor: a data cache for its devices and the trainer."""

    def __init__(self, source: DataSource, capacity: int) -> None:
        from dandelion.aggregation import single_threaded_blas

        single_threaded_blas()
        self.cache = DataCache(source, capacity)

    def train(
        self, spec: ModelSpec, hyper: Hyper, params: np.ndarray, items: list[Item]
    ) -> list[SparseResult | None]:
        return train_items(self.cache, spec, hyper, params, items)

    def built(self) -> int:
        return self.cache.built


class RayBackend(Backend):
    def __init__(
        self,
        source: DataSource,
        actors: int,
        cache_capacity: int,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
    ) -> None:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or actors
            ray.init(**kwargs)
            self._owns_ray = True
        else:
            self._owns_ray = False
        self._ray = ray
        remote: Any = ray.remote(num_cpus=1)(_Shard)
        per_actor = max(1, cache_capacity // actors)
        self.workers = actors
        self._actors: list[Any] = [remote.remote(source, per_actor) for _ in range(actors)]

    def submit(
        self, spec: ModelSpec, hyper: Hyper, params: np.ndarray, items: Sequence[Item]
    ) -> Collect:
        ray = self._ray
        model = ray.put(np.array(params))  # once per batch, shared by every actor
        parts = []
        for k, positions in enumerate(shards(items, self.workers)):
            if positions:
                chunk = [items[n] for n in positions]
                parts.append((positions, self._actors[k].train.remote(spec, hyper, model, chunk)))
        size = len(items)

        def collect() -> list[SparseResult | None]:
            results = ray.get([ref for _, ref in parts])
            return gather(size, [(pos, res) for (pos, _), res in zip(parts, results, strict=True)])

        return collect

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._owns_ray:
            self._ray.shutdown()
