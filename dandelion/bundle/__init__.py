"""The worker bundle: our worker wheel, the Pyodide runtime, a lock file and the JS glue.

``build_wheel`` packs the worker (``browser_worker`` and ``dandelion.protocol``, nothing else)
into a pure-Python wheel; ``assemble_bundle`` lays out the static folder that ``dandelion serve``
serves at ``/worker/``; ``assemble_extension`` packs the Manifest V3 extension with a bundle
inside it. No file in a bundle is fetched from a third party at run time.
"""

from __future__ import annotations

from .assemble import (
    BUNDLE_MANIFEST,
    BundleError,
    BundleInfo,
    assemble_bundle,
    assemble_extension,
    find_pyodide,
)
from .wheel import WORKER_DIST, WheelInfo, build_wheel

__all__ = [
    "BUNDLE_MANIFEST",
    "WORKER_DIST",
    "BundleError",
    "BundleInfo",
    "WheelInfo",
    "assemble_bundle",
    "assemble_extension",
    "build_wheel",
    "find_pyodide",
]
