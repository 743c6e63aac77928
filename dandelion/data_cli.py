"""``dandelion data``: make and check the emulator's inputs — the devices' data table
(``convert``, ``check``) and a session trace (``trace``). ``docs/cli.md`` and
``docs/emulation.md`` describe the formats.

A bad file ends the command with one line on standard error (``dandelion data ACTION: …``)
and exit status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_data_parser", "run_data"]


def add_data_parser(sub: Any) -> None:
    data = sub.add_parser(
        "data", help="Make and check the emulator's inputs: data tables and session traces."
    )
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    convert = data_sub.add_parser(
        "convert", help="Turn a per-client CSV (one row per example) into a data table."
    )
    convert.add_argument("csv", metavar="IN.csv", help="Header row first, one row per example.")
    convert.add_argument("-o", "--out", required=True, metavar="OUT.npz", help="The table.")
    convert.add_argument("--client-column", required=True, help="Who holds the row's example.")
    target = convert.add_mutually_exclusive_group(required=True)
    target.add_argument("--label-column", help="The class of a classifier's example.")
    target.add_argument("--target-column", help="The value of a regression's example.")
    convert.add_argument("--features", help="Comma-separated feature columns [every other column].")
    convert.add_argument("--test", metavar="TEST.csv", help="Held-out rows, same columns.")
    convert.add_argument(
        "--test-share",
        type=float,
        default=0.1,
        help="Without --test: the share of clients held out [0.1].",
    )
    convert.add_argument("--seed", type=int, default=0, help="Which clients are held out [0].")
    convert.add_argument(
        "--task-out", metavar="TASK.toml", help="Also write a task file that fits the table."
    )
    convert.add_argument("--json", action="store_true", help="Print JSON.")
    check = data_sub.add_parser("check", help="Check a data table; print what it holds.")
    check.add_argument("table", metavar="TABLE.npz")
    check.add_argument("--json", action="store_true", help="Print JSON.")
    trace = data_sub.add_parser("trace", help="Check a session trace; print what it holds.")
    trace.add_argument("trace", metavar="TRACE", help="A .csv or .json trace.")
    trace.add_argument("--json", action="store_true", help="Print JSON.")


def run_data(args: argparse.Namespace) -> int:
    from .emulation.population import PopulationConfigError

    try:
        if args.data_command == "convert":
            info = _convert(args)
        elif args.data_command == "check":
            info = _check(args.table)
        else:
            info = _trace(args.trace)
    except PopulationConfigError as exc:  # TableError, TraceError
        print(f"dandelion data {args.data_command}: {exc}", file=sys.stderr)
        return 2
    line = info.pop("line")
    print(json.dumps(info) if args.json else line)
    return 0


def _convert(args: argparse.Namespace) -> dict[str, Any]:
    from .emulation.convert import convert_csv

    features = [f.strip() for f in args.features.split(",")] if args.features else None
    summary = convert_csv(
        args.csv,
        args.out,
        client_column=args.client_column,
        label_column=args.label_column,
        target_column=args.target_column,
        feature_columns=features,
        test=args.test,
        test_share=args.test_share,
        seed=args.seed,
    )
    info = summary.to_dict()
    if args.task_out:
        Path(args.task_out).write_text(summary.task_toml(Path(args.out).stem))
        info["task"] = args.task_out
    info["line"] = (
        f"wrote {summary.path}: {summary.devices} devices, {summary.rows} rows, "
        f"{summary.test_rows} held out, {summary.num_features} features"
        + (f", {summary.num_classes} classes" if summary.num_classes is not None else "")
    )
    return info


def _check(path: str) -> dict[str, Any]:
    import numpy as np

    from .emulation.tableformat import read_table

    t = read_table(path)
    labels, per_device = t["labels"], np.diff(t["ptr"])
    info: dict[str, Any] = {
        "path": path,
        "devices": int(t["ptr"].shape[0] - 1),
        "rows": int(labels.shape[0]),
        "test_rows": int(t["test_labels"].shape[0]),
        "num_features": int(t["num_features"]),
        "regression": "targets" in t,
        "max_label": int(max(labels.max(initial=0), t["test_labels"].max(initial=0))),
        "rows_per_device": {"min": int(per_device.min()), "max": int(per_device.max())},
    }
    info["line"] = (
        f"{path}: {info['devices']} devices, {info['rows']} rows "
        f"({info['rows_per_device']['min']} to {info['rows_per_device']['max']} per device), "
        f"{info['test_rows']} held out, {info['num_features']} features, "
        + ("regression targets" if info["regression"] else f"labels 0 .. {info['max_label']}")
    )
    return info


def _trace(path: str) -> dict[str, Any]:
    from .emulation.trace import load_trace

    trace = load_trace(path)
    sessions = list(trace)
    info: dict[str, Any] = {
        "path": path,
        "devices": trace.devices,
        "sessions": trace.sessions,
        "first_s": min(s.start_s for s in sessions),
        "last_s": max(s.end_s for s in sessions),
        "peak_online": trace.peak_online(),
        "sha256": trace.sha256,
    }
    info["line"] = (
        f"{path}: {info['sessions']} sessions of devices 0 .. {trace.devices - 1}, from "
        f"{info['first_s']:g} s to {info['last_s']:g} s, at most {info['peak_online']} online "
        "at once"
    )
    return info
