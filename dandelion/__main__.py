"""``python -m dandelion`` is the ``dandelion`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":  # not when a spawned process re-imports the main module
    raise SystemExit(main())
