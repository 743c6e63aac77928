"""Live round coordination across coordinator processes, through Redis.

A cluster is K ``dandelion serve --cluster redis://…`` processes behind a load balancer, each
holding its own workers' connections and a partial aggregate, with durable state in PostgreSQL.
Redis holds what is live and shared (docs/design.md, "A cluster"):

- :mod:`.leader`: one leader per task, by a lease with expiry and a fencing epoch;
- :mod:`.budget`: a round's assignment budget and report count, atomic across shards;
- :mod:`.announce`: the committed model version, announced on pub/sub and kept in a key;
- :mod:`.shards`: one shard's round coordination, which ``serve --cluster`` hands its
  coordinator (imported on its own: it stands on the coordinator, the modules above do not).

Nothing individual rests in Redis: counts, leases, versions — never an update.
"""

from __future__ import annotations

from .announce import ModelAnnouncer, Version
from .budget import RoundCounters
from .connection import ClusterError, check, connect
from .leader import LeaderLease, Leadership, LeaseHolder

__all__ = [
    "ClusterError",
    "LeaderLease",
    "Leadership",
    "LeaseHolder",
    "ModelAnnouncer",
    "RoundCounters",
    "Version",
    "check",
    "connect",
]
