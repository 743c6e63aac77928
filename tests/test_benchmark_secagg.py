"""benchmarks/secagg_vs_plain.py measures a real round: small sizes finish, sum what the plain path
sums (it raises otherwise), and report every figure its JSON promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "secagg_bench", ROOT / "benchmarks" / "secagg_vs_plain.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_small_round_is_measured_and_its_sums_agree() -> None:
    result = await _bench().measure_round(40, 64, dropout=0.1, seed=3)
    assert (result["n"], result["d"], result["dropped"]) == (40, 64, 4)
    assert result["summed"] == 40 - 3  # one dropout per phase; the unmasking's are summed
    assert result["sum_max_abs_diff"] <= 40 * 2.0**-21 + 1e-4
    assert 0 < result["client_s_min"] <= result["client_s_median"] <= result["client_s_max"]
    assert result["client_bytes_sent_median"] > 4 * 64  # at least the masked vector
    assert result["coordinator_s"] > 0 and result["coordinator_vs_plain"] > 0
