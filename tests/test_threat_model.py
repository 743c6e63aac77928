"""THREAT_MODEL.md backs each claim with a test: every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_test_the_threat_model_names_exists() -> None:
    text = (ROOT / "THREAT_MODEL.md").read_text()
    refs = re.findall(r"`(tests/[\w/]+\.py|tests/[\w/]+_\*\.py)(?:::(\w+))?`", text)
    assert len(refs) >= 20
    for ref, name in refs:
        paths = sorted(ROOT.glob(ref))
        assert paths, f"THREAT_MODEL.md names {ref}, which does not exist"
        if name:
            assert name in _functions(paths[0]), f"{ref} has no {name}"
    docs = re.findall(r"\]\((docs/[\w.]+)\)", text)
    for doc in docs:
        assert (ROOT / doc).exists(), doc
