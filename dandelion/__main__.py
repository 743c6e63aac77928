"""``python -m dandelion`` is the ``dandelion`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
