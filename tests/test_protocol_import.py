"""The protocol and worker packages must import where Pyodide can: no numpy, no sockets."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ["numpy", "scipy", "aiohttp", "websockets", "sqlite_utils", "sqlite3", "jsonschema"]


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys, json\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return list(json.loads(out))


def test_protocol_imports_nothing_forbidden() -> None:
    assert _loaded_after("import dandelion.protocol") == []


def test_worker_imports_nothing_forbidden() -> None:
    statement = (
        "import browser_worker, browser_worker.worker, browser_worker.host, "
        "browser_worker.training, browser_worker.features, browser_worker.models"
    )
    assert _loaded_after(statement) == []


def test_the_check_itself_can_fail() -> None:
    assert _loaded_after("import json, numpy") == ["numpy"]
