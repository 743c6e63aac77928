"""Dandelion: federated learning in web browsers.

This top-level package stays light on purpose: importing it must not pull in aiohttp, numpy or
SQLite (``dandelion.protocol`` runs inside Pyodide). Import the parts you need from their
subpackages.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
