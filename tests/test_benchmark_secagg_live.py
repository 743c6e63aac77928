"""benchmarks/secagg_live.py runs real rounds through the live coordinator: plain and secure
rounds of a few workers complete, and every figure its JSON promises is there."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "secagg_live_bench", ROOT / "benchmarks" / "secagg_live.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_plain_and_secure_rounds_are_measured_side_by_side() -> None:
    args = argparse.Namespace(workers=5, features=20, rounds=2, repeats=1)
    result = await _bench().run(args)
    assert (result["workers"], result["d"], result["rounds_each"]) == (5, 21, 2)
    for kind in ("plain_round_s", "secure_round_s"):
        s = result[kind]
        assert 0 < s["min"] <= s["median"] <= s["max"] < 60
    assert result["secure_vs_plain_round_s"] > 0
