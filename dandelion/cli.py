"""The ``dandelion`` command: serve, task, bundle, demo.

Every setting of ``dandelion.settings.SETTINGS`` is a flag of ``serve`` (and of ``demo`` where it
applies) and an environment variable; ``docs/cli.md`` lists the commands and a test keeps it in
step with this parser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .settings import SETTINGS, Settings, SettingsError, load_settings

__all__ = ["build_parser", "main"]


def _add_settings(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    group = parser.add_argument_group("settings (also DANDELION_<NAME> environment variables)")
    for s in SETTINGS:
        if only is not None and s.name not in only:
            continue
        group.add_argument(
            s.flag,
            dest=s.name,
            type=s.type,
            default=None,
            metavar=s.type.__name__.upper(),
            help=f"{s.help} [default: {s.default}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dandelion",
        description="Federated learning in web browsers: coordinator, tasks and demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="Run the coordinator (worker WebSocket at /ws).")
    serve.add_argument(
        "--task",
        dest="task_files",
        action="append",
        default=[],
        metavar="FILE",
        help="Create this task (TOML) at start-up unless a task of that name exists.",
    )
    _add_settings(serve)

    task = sub.add_parser("task", help="Create, list and show tasks in the state file.")
    task_sub = task.add_subparsers(dest="task_command", required=True, metavar="ACTION")
    create = task_sub.add_parser("create", help="Create a task from a TOML file.")
    create.add_argument("file", help="Task file (see docs/tasks.md).")
    lst = task_sub.add_parser("list", help="List tasks with their status and progress.")
    show = task_sub.add_parser("show", help="Show one task: config, rounds, model versions.")
    show.add_argument("name")
    for p in (create, lst, show):
        p.add_argument("--json", action="store_true", help="Print JSON.")
        _add_settings(p, only=["db"])

    bundle = sub.add_parser(
        "bundle",
        help="Build the worker bundle (Pyodide runtime, worker wheel, lock file, JS) that "
        "`serve` serves at /worker/, or the browser extension with one inside.",
    )
    bundle.add_argument(
        "--out", default=None, help="Output folder [the bundle_dir setting, or the extension's]."
    )
    bundle.add_argument(
        "--pyodide",
        default=None,
        metavar="DIR",
        help="The npm package `pyodide` [node_modules/pyodide here or in the project].",
    )
    bundle.add_argument(
        "--extension",
        action="store_true",
        help="Build the unpacked Manifest V3 extension instead (default out: worker-extension).",
    )
    bundle.add_argument(
        "--coordinator-url",
        default="ws://127.0.0.1:8750/ws",
        help="With --extension: the coordinator its worker reports to [ws://127.0.0.1:8750/ws].",
    )
    bundle.add_argument("--json", action="store_true", help="Print JSON.")
    _add_settings(bundle, only=["bundle_dir"])

    demo = sub.add_parser(
        "demo",
        help="Run a local coordinator and emulated workers over real WebSockets; compare the "
        "federated model with central training.",
    )
    demo.add_argument("--workers", type=int, default=20, help="Number of workers [20].")
    demo.add_argument("--rounds", type=int, default=15, help="Rounds to train [15].")
    demo.add_argument("--seed", type=int, default=7, help="Seed of the synthetic data [7].")
    demo.add_argument(
        "--heterogeneity",
        type=float,
        default=0.5,
        help="Dirichlet concentration of users' interests: small = very non-IID [0.5].",
    )
    demo.add_argument("--json", action="store_true", help="End with one JSON object.")
    demo.add_argument(
        "--db", default=None, help="Keep the demo's SQLite state here [a temporary file]."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "task":
            return _task(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "bundle":
            return _bundle(args)
    except SettingsError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    names = {s.name for s in SETTINGS}
    return load_settings(overrides={k: v for k, v in vars(args).items() if k in names})


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import make_app
    from .coordinator import TaskConfigError, load_task_file

    settings = _settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        configs = [load_task_file(f) for f in args.task_files]
    except TaskConfigError as exc:
        print(f"dandelion serve: {exc}", file=sys.stderr)
        return 2

    app = make_app(settings, tasks=configs)
    print(f"dandelion: coordinator on http://{settings.host}:{settings.port} (workers: /ws)")
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0


def _task(args: argparse.Namespace) -> int:
    from .coordinator import TaskConfigError, load_task_file
    from .tasks_cli import create_task_in, describe_task, list_tasks_in

    settings = _settings(args)
    if args.task_command == "create":
        try:
            config = load_task_file(args.file)
            info = create_task_in(settings.db, config)
        except (TaskConfigError, ValueError) as exc:
            print(f"dandelion task create: {exc}", file=sys.stderr)
            return 2
        _print(info, args.json, f"created task {config.name} ({info['param_count']} parameters)")
        return 0
    if args.task_command == "list":
        rows = list_tasks_in(settings.db)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows or [{"name": "(no tasks)", "status": "", "model_version": ""}]:
                print(f"{row['name']:<24} {row['status']:<8} version {row['model_version']}")
        return 0
    shown = describe_task(settings.db, args.name)
    if shown is None:
        print(f"dandelion task show: no task {args.name!r}", file=sys.stderr)
        return 1
    _print(shown, args.json, None)
    return 0


def _print(info: dict[str, Any], as_json: bool, line: str | None) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
    elif line is not None:
        print(line)
    else:
        for key, value in info.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def _bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bundle import BundleError, assemble_bundle, assemble_extension

    settings = _settings(args)
    try:
        if args.extension:
            out = Path(args.out or "worker-extension")
            info = assemble_extension(out, args.coordinator_url, args.pyodide)
        else:
            out = Path(args.out or settings.bundle_dir)
            info = assemble_bundle(out, args.pyodide)
    except BundleError as exc:
        print(f"dandelion bundle: {exc}", file=sys.stderr)
        return 2
    summary = {
        "path": str(out),
        "pyodide": info.pyodide_version,
        "wheel": info.wheel,
        "bytes": info.total_bytes,
        "files": len(info.files),
    }
    what = "extension" if args.extension else "worker bundle"
    line = (
        f"{what} in {out}: Pyodide {info.pyodide_version}, {info.wheel}, "
        f"{info.total_bytes / 1e6:.1f} MB in {len(info.files)} files"
    )
    _print(summary, args.json, line)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .emulation.demo import DemoOptions, run_demo

    options = DemoOptions(
        workers=args.workers,
        rounds=args.rounds,
        seed=args.seed,
        heterogeneity=args.heterogeneity,
        db=args.db,
        progress=not args.json or sys.stderr.isatty(),
    )
    result = asyncio.run(run_demo(options))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"federated model after {result['rounds']} rounds: test accuracy "
            f"{result['final_accuracy']:.3f}; trained centrally on the pooled data: "
            f"{result['baseline_accuracy']:.3f} ({result['gap_points']:+.2f} points apart, "
            f"{result['wall_s']:.0f} s)"
        )
    return 0 if result["rounds"] == options.rounds else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
