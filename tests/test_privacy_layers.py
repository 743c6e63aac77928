"""``dandelion.privacy`` is maths: no I/O, no storage, and dp-accounting only when it is used."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(statement: str, watch: list[str]) -> list[str]:
    code = (
        f"import sys, json\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {watch!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return list(json.loads(out))


def test_privacy_maths_imports_no_io_and_accounting_lazily() -> None:
    watch = ["dp_accounting", "aiohttp", "websockets", "sqlite3", "sqlite_utils", "asyncio"]
    assert _loaded_after("import dandelion.privacy", watch) == []


def test_the_accountant_loads_dp_accounting_when_asked() -> None:
    statement = (
        "from dandelion.privacy import epsilon_after\n"
        "assert epsilon_after(0.01, 1.0, 10, 1e-5, 'rdp') > 0"
    )
    assert _loaded_after(statement, ["dp_accounting"]) == ["dp_accounting"]
