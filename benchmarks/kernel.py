"""The aggregation kernel against a plain memory copy of the same payload.

Per update the coordinator does ``decode`` (a zero-copy view) + norm (BLAS sdot) + clip +
``saxpy`` into the float32 sum. The floor for any server that looks at an update at all is one
copy of its bytes into an array. Both are timed interleaved, median of many repeats, so machine
load falls on both alike. ``kernel_vs_copy`` = copy time / kernel time (1.0: as fast as memcpy).

    python benchmarks/kernel.py [--d 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dandelion.aggregation import StreamingSum, decode_update, single_threaded_blas

__all__ = ["measure_kernel"]


def measure_kernel(d: int = 100_000, repeats: int = 2000) -> dict[str, Any]:
    single_threaded_blas()  # as the coordinator runs it
    rng = np.random.default_rng(0)
    payload = rng.normal(size=d).astype("<f4").tobytes()
    view = memoryview(payload)
    acc = StreamingSum(d)
    dest = np.empty(d, dtype=np.float32)
    kernel, copy = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        acc.add(decode_update(view, "float32", d), weight=1.0, bound=1.0)
        t1 = time.perf_counter()
        np.copyto(dest, np.frombuffer(view, dtype="<f4"))
        t2 = time.perf_counter()
        kernel.append(t1 - t0)
        copy.append(t2 - t1)
    kernel_us = 1e6 * statistics.median(kernel)
    copy_us = 1e6 * statistics.median(copy)
    return {
        "d": d,
        "kernel_us": round(kernel_us, 2),
        "copy_us": round(copy_us, 2),
        "kernel_vs_copy": round(copy_us / kernel_us, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=100_000)
    print(json.dumps(measure_kernel(parser.parse_args().d)))
