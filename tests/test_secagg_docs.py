"""The secure-aggregation pages say what the code does: every [secure_aggregation] key is in
docs/tasks.md, the timeout defaults in docs/secure_aggregation.md are the code's, and the
abort reasons of the schema are the parser's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dandelion.coordinator.secure_config import SECURE_KEYS, SecureAggregationPlan
from dandelion.protocol.secagg.messages import ABORT_REASONS
from dandelion.protocol.secagg.params import PHASE_TIMEOUTS

ROOT = Path(__file__).resolve().parent.parent


def test_every_table_key_is_in_the_task_file_reference() -> None:
    text = (ROOT / "docs" / "tasks.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `[secure_aggregation]")]
    documented = set(re.findall(r"`(?:\[secure_aggregation\] )?([a-z_]+)`", "\n".join(rows)))
    assert set(SECURE_KEYS) <= documented, set(SECURE_KEYS) - documented


def test_the_timeout_table_holds_the_code_defaults() -> None:
    text = (ROOT / "docs" / "secure_aggregation.md").read_text()
    table = dict(re.findall(r"^\| `([a-z_]+_timeout_s)` \| (\d+) \|", text, re.MULTILINE))
    plan = SecureAggregationPlan()
    assert table == {key: str(int(getattr(plan, key))) for key in SECURE_KEYS[4:]}
    phases = {k.removesuffix("_s"): v for k, v in PHASE_TIMEOUTS.items()}
    assert {k.removesuffix("_timeout_s"): float(v) for k, v in table.items()} == phases


def test_the_abort_reasons_are_the_schema_s() -> None:
    schema = json.loads((ROOT / "schemas" / "secagg" / "secagg_abort.schema.json").read_text())
    assert set(schema["properties"]["reason"]["enum"]) == ABORT_REASONS
