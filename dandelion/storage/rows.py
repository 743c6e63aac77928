"""Stored rows back into records: one decoder per table, for every SQL backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .records import EvaluationRecord, ModelVersion, RoundRecord, TaskConfigVersion, TaskRecord

__all__ = ["config_row", "evaluation_row", "round_row", "task_row", "version_row"]


def task_row(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord(row[0], json.loads(row[1]), row[2], row[3], row[4] or "", int(row[5]))


def config_row(row: Sequence[Any]) -> TaskConfigVersion:
    return TaskConfigVersion(row[0], int(row[1]), json.loads(row[2]), row[3], row[4] or "")


def version_row(row: Sequence[Any]) -> ModelVersion:
    return ModelVersion(
        row[0], row[1], row[2], bytes(row[3]), bytes(row[4] or b""), row[5], json.loads(row[6])
    )


def round_row(row: Sequence[Any]) -> RoundRecord:
    (task, number, version, status, opened, closed, goal, assigned, reported, rejected, dropped) = (
        row[:11]
    )
    return RoundRecord(
        task,
        number,
        version,
        status,
        opened,
        closed,
        goal,
        assigned,
        reported,
        rejected,
        dropped,
        json.loads(row[11] or "{}"),
        int(row[12]),
        row[13],
    )


def evaluation_row(row: Sequence[Any]) -> EvaluationRecord:
    task, number, version, reports, withheld = row[:5]
    count, loss_sum, correct, loss, accuracy, z, opened, closed = row[5:13]
    return EvaluationRecord(
        task,
        int(number),
        int(version),
        int(reports),
        bool(withheld),
        count,
        loss_sum,
        correct,
        loss,
        accuracy,
        z,
        opened,
        closed,
    )
