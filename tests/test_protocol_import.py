"""The protocol and worker packages must import where Pyodide can: no numpy, no sockets."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = [
    "numpy",
    "scipy",
    "aiohttp",
    "websockets",
    "sqlite_utils",
    "sqlite3",
    "jsonschema",
    "cryptography",
]


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


def test_secure_aggregation_protocol_imports_nothing_forbidden() -> None:
    """The worker runs it in Pyodide: its crypto comes through the injected host."""
    statement = (
        "import dandelion.protocol.secagg, dandelion.protocol.secagg.messages, "
        "dandelion.protocol.secagg.derivation"
    )
    assert _loaded_after(statement) == []


def test_worker_imports_nothing_forbidden() -> None:
    statement = (
        "import browser_worker, browser_worker.worker, browser_worker.host, "
        "browser_worker.training, browser_worker.predict, browser_worker.reference, "
        "browser_worker.host.memory, dandelion.taskspec, dandelion.taskspec.objectives, "
        "dandelion.taskspec.models.builtin, dandelion.taskspec.synthetic, "
        "dandelion.taskspec.synthetic_tabs, dandelion.taskspec.objectives.next_site, "
        "dandelion.taskspec.objectives.tab_switch"
    )
    assert _loaded_after(statement) == []


def test_only_the_hosts_import_js_or_websockets() -> None:
    """The host seam: ``js``/``pyodide`` only in host/pyodide.py and host/webcrypto.py (the
    browser's WebSocket and its crypto), ``websockets`` only in host/cpython.py."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "browser_worker"
    allowed = {
        "js": {"host/pyodide.py", "host/webcrypto.py"},
        "pyodide": {"host/pyodide.py", "host/webcrypto.py"},
        "websockets": {"host/cpython.py"},
    }
    found: dict[str, set[str]] = {name: set() for name in allowed}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in found:
                    found[top].add(path.relative_to(root).as_posix())
    assert found == allowed


def test_the_check_itself_can_fail() -> None:
    assert _loaded_after("import json, numpy") == ["numpy"]
