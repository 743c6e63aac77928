"""Random rounds with random dropouts: either the round finishes with the exact sum of the
masked vectors that arrived, or it is abandoned exactly when the documented rule says it could
not finish — and then no share was asked for before the masked phase closed."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dandelion.protocol.secagg.messages import Unmask
from dandelion.protocol.secagg.server import Phase

from .secagg_harness import PHASES, Round


@st.composite
def rounds(draw: st.DrawFn) -> tuple[Round, dict[Phase, set[int]]]:
    n = draw(st.integers(4, 18))
    r = Round(n, d=8, seed=draw(st.binary(min_size=32, max_size=32)))
    people = list(range(1, n + 1))
    drops = {p: set(draw(st.lists(st.sampled_from(people), max_size=n // 3))) for p in PHASES}
    return r, drops


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rounds())
async def test_a_round_ends_by_its_rule_whatever_drops(
    case: tuple[Round, dict[Phase, set[int]]],
) -> None:
    r, drops = case
    await r.run(drops)
    server, t = r.server, r.params.threshold
    event(f"{server.phase.value} {server.abandon_reason or ''}".strip())
    if server.phase is Phase.DONE:
        assert server.result == r.expected_total()
        assert server.live[3] == r.sent_masked
        return
    assert server.phase is Phase.ABANDONED
    reason = server.abandon_reason
    unmasks = [m for _, m in r.received if isinstance(m, Unmask)]
    if reason == "too_few_shares":
        # Asked, but some secret got fewer than t shares: the rule of phase 5.
        assert unmasks
        return
    assert reason == "too_few_survivors"
    assert unmasks == []  # nothing was asked for
    live = server.live
    if len(live) >= 4:  # it ended at the close of the masked phase: check why
        u2, u3 = live[2], live[3]
        short = [
            i
            for i in u2
            if len(r.graph[i] & u2 & u3) < t  # its masked-with neighbours that survived
        ]
        assert len(u3) < r.params.min_survivors or short
    else:  # at the close of phase 1 or 2, after pruning
        assert len(live[-1]) < r.params.min_survivors
