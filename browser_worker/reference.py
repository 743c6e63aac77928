"""One local round, fixed and seeded, that any runtime can run and compare byte for byte.

``reference_round(request_json)`` runs what a worker does with an assignment — signals to
visits, visits to examples, local SGD from the received model, clipping — and encodes the
clipped update as the tensor frame the worker would send. The browser parity test and
``benchmarks/browser.py`` call it in Pyodide (inside Chromium) and in CPython on the same input.

The request (JSON)::

    {"signals": {...as in dandelion.taskspec.signals...}, "now": seconds since the epoch,
     "objective": "revisit_7d", "features": {...}, "model": {"kind": ..., "hidden": ...},
     "hyper": {...}, "seed": int, "repeats": int}

The answer (JSON): ``frame`` (hex, float32 as sent), ``delta`` (the clipped update in full
float64 precision), ``examples``, ``loss``, ``accuracy``, ``norm``,
``unclipped``, ``features_ms`` and ``train_ms`` (one per repeat; every repeat trains the same
round again from the same start, so the last ones are warm).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from dandelion.protocol import FrameHeader, encode_frame, payload_from_floats
from dandelion.taskspec.models import ModelSpec, init_params
from dandelion.taskspec.registry import objective
from dandelion.taskspec.signals import parse_signals

from .training import Hyper, train_local

__all__ = ["reference_round"]

_NONCE = "reference-round-nonce"


def reference_round(request_json: str) -> str:
    request: dict[str, Any] = json.loads(request_json)
    seed = int(request.get("seed", 0))
    started = time.perf_counter()
    signals = parse_signals(request["signals"])
    task_objective = objective(request.get("objective", "revisit_7d"))
    features = task_objective.configure(request.get("features") or {})
    examples = task_objective.examples(signals, features, request["now"])
    features_ms = (time.perf_counter() - started) * 1000
    model = dict(request["model"])
    model.setdefault("num_features", task_objective.num_features(features))
    spec = ModelSpec.from_dict(model)
    params = init_params(spec, random.Random(seed))
    hyper = Hyper.from_dict(request["hyper"])
    train_ms: list[float] = []
    result = None
    for _ in range(max(1, int(request.get("repeats", 1)))):
        t0 = time.perf_counter()
        result = train_local(spec, params, examples, hyper, random.Random(f"{seed}:train"))
        train_ms.append((time.perf_counter() - t0) * 1000)
    assert result is not None
    header = FrameHeader("update", "reference", 1, _NONCE, "float32", (len(result.clipped_delta),))
    frame = encode_frame(header, payload_from_floats(result.clipped_delta, "float32"))
    return json.dumps(
        {
            "frame": frame.hex(),
            "delta": result.clipped_delta,
            "examples": result.num_examples,
            "loss": result.loss,
            "accuracy": result.accuracy,
            "norm": result.norm,
            "unclipped": result.unclipped,
            "features_ms": features_ms,
            "train_ms": train_ms,
        }
    )
