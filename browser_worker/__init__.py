"""Dandelion's worker: pure Python that trains on local browsing signals and reports clipped
updates. It runs unchanged in Pyodide (in a browser's Web Worker) and in CPython (the demo and
the emulator). Standard library only; everything host-specific sits behind ``browser_worker.host``.

Import the parts you need: ``browser_worker.worker`` (the loop), ``browser_worker.training``,
``dandelion.taskspec.objectives.revisit``, ``dandelion.taskspec.models``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
