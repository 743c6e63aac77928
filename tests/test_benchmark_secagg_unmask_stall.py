"""benchmarks/secagg_unmask_stall.py runs a round's unmasking in place and on the unmasking
thread: both give the same sum (the benchmark checks it), and every figure its JSON promises
is there."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "secagg_unmask_stall_bench", ROOT / "benchmarks" / "secagg_unmask_stall.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_unmasking_is_measured_in_place_and_on_its_thread() -> None:
    args = argparse.Namespace(n=20, d=1000, repeats=1)
    result = await _bench().run(args)
    assert (result["n"], result["d"], result["repeats"]) == (20, 1000, 1)
    for key in ("stall_s", "unmask_s"):
        for kind in ("in_place", "thread"):
            s = result[key][kind]
            assert 0 < s["min"] <= s["median"] <= s["max"] < 60
    assert result["stall_thread_vs_in_place"] > 0
