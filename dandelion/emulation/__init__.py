"""Emulation: the demo, and large emulated populations (``dandelion emulate``).

Importing this package is light: numpy, Ray and the coordinator load with the modules that
need them.
"""

from __future__ import annotations

from .population import PopulationConfig, PopulationConfigError, load_population
from .resultfiles import write_results
from .results import RoundRecord, RunResult
from .run import EmulateOptions, EmulationError, emulate
from .trace import load_trace

__all__ = [
    "EmulateOptions",
    "EmulationError",
    "PopulationConfig",
    "PopulationConfigError",
    "RoundRecord",
    "RunResult",
    "emulate",
    "load_population",
    "load_trace",
    "write_results",
]
