"""The ``dandelion`` command: serve, task (``task_commands.py``), model, bundle, privacy, demo,
emulate, data (``data_cli.py``).

Every setting of ``dandelion.settings.SETTINGS`` is a flag of ``serve`` (and of ``demo`` where it
applies) and an environment variable; ``docs/cli.md`` lists the commands and a test keeps it in
step with this parser.

An operator's mistake — a port in use, a missing, corrupt or foreign state file, a state file
another coordinator holds, an unreadable task file — ends the command with one line on standard
error (``dandelion COMMAND: …``), never a traceback: exit status 2 when the command line or a
file must change, 1 when something else is in the way (a running coordinator, the port).
``serve_cli.py`` holds the start of ``serve`` and the state-file rules of every command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data_cli import add_data_parser, run_data
from .serve_cli import print_result as _print
from .settings import SETTINGS, Settings, SettingsError, load_settings
from .task_commands import add_task_parser, run_task

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
        help="Create this task (TOML) at start-up unless a task of that name exists (and the "
        "state file if it does not exist).",
    )
    serve.add_argument(
        "--create",
        action="store_true",
        help="Create the state file (--db) if it does not exist; without this (or --task) a "
        "missing state file is an error.",
    )
    _add_settings(serve)

    add_task_parser(sub, _add_settings, _add_with)

    token = sub.add_parser(
        "token", help="Make, list and revoke the bearer tokens of the admin API and dashboard."
    )
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_create = token_sub.add_parser("create", help="Make a token; it is printed once.")
    token_create.add_argument("name", help="What the token is for (e.g. grafana, ops-laptop).")
    token_list = token_sub.add_parser("list", help="List tokens by name (never the tokens).")
    token_revoke = token_sub.add_parser("revoke", help="Revoke a token by name.")
    token_revoke.add_argument("name")
    for p in (token_create, token_list, token_revoke):
        p.add_argument("--json", action="store_true", help="Print JSON.")
        _add_settings(p, only=["db"])

    backup = sub.add_parser(
        "backup",
        help="Copy the state file with SQLite's online backup API (safe while serving) and "
        "verify the copy.",
    )
    backup.add_argument("dest", help="The backup file to write.")
    restore = sub.add_parser(
        "restore", help="Verify a backup and put it in place of the state file (stop serve first)."
    )
    restore.add_argument("source", help="The backup file to restore.")
    for p in (backup, restore):
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
        default=None,
        help="With --extension: the coordinator its worker reports to until the user sets "
        "another on the options page [none: the options page asks for one].",
    )
    bundle.add_argument("--json", action="store_true", help="Print JSON.")
    _add_with(bundle, into_wheel=True)
    _add_settings(bundle, only=["bundle_dir"])

    privacy = sub.add_parser(
        "privacy", help="Privacy accounting: what a DP plan costs (dp-accounting)."
    )
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    eps = privacy_sub.add_parser(
        "epsilon",
        help="ε after T rounds: Poisson-sampled Gaussian (q, z), or DP-FTRL (tree, z).",
    )
    eps.add_argument(
        "--mechanism", choices=["poisson", "dp_ftrl"], default="poisson", help="[poisson]."
    )
    eps.add_argument("--q", type=float, help="poisson: sampling probability per round.")
    eps.add_argument("--tree", type=int, help="dp_ftrl: the tree's length (min_separation).")
    eps.add_argument("--noise", type=float, required=True, help="Noise multiplier z.")
    eps.add_argument("--rounds", type=int, required=True, help="Number of rounds T.")
    eps.add_argument("--delta", type=float, required=True, help="Target δ.")
    eps.add_argument(
        "--accountant", choices=["pld", "rdp"], default="pld", help="Accountant [pld]."
    )
    eps.add_argument("--json", action="store_true", help="Print one JSON object.")

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
    _add_emulate(sub)
    add_data_parser(sub)
    _add_model(sub)
    return parser


def _add_model(sub: Any) -> None:
    model = sub.add_parser("model", help="Export a task's model versions as files.")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    export = model_sub.add_parser(
        "export", help="Write one model version as an ONNX or a safetensors file."
    )
    export.add_argument("task", metavar="TASK", help="The task's name.")
    export.add_argument(
        "--version", type=int, default=None, metavar="N", help="[the latest committed version]"
    )
    export.add_argument("--format", choices=["onnx", "safetensors"], required=True)
    export.add_argument("--out", required=True, metavar="FILE", help="The file to write.")
    export.add_argument("--json", action="store_true", help="Print JSON.")
    _add_settings(export, only=["db"])
    _add_with(export)


def _add_emulate(sub: Any) -> None:
    emulate = sub.add_parser(
        "emulate",
        help="Emulate a population of browser workers (the real worker code, each with its own "
        "data and behaviour) against the real coordinator: in-process on virtual time, or over "
        "real WebSockets.",
    )
    emulate.add_argument(
        "--population", metavar="FILE", help="Population file, TOML or JSON (docs/emulation.md)."
    )
    emulate.add_argument("--workers", type=int, help="Population size [the file's, or 1000].")
    emulate.add_argument("--rounds", type=int, help="Rounds to complete [the file's, or 10].")
    emulate.add_argument("--cohort", type=int, help="Reports per round (the task's goal).")
    emulate.add_argument("--seed", type=int, help="Seed of the population and its data.")
    emulate.add_argument("--task", metavar="FILE", help="Task file (TOML) [the file's [task]].")
    emulate.add_argument(
        "--mode", choices=["inprocess", "websocket"], default="inprocess", help="[inprocess]"
    )
    emulate.add_argument(
        "--backend",
        choices=["local", "processes", "ray"],
        default="local",
        help="Where in-process training runs: here, in --processes processes, or on Ray [local].",
    )
    emulate.add_argument("--processes", type=int, default=2, help="Processes or Ray actors [2].")
    emulate.add_argument("--ray-address", help="Join this Ray cluster (e.g. auto) [start one].")
    emulate.add_argument(
        "--url",
        help="websocket: a running coordinator's /ws URL, or a cluster's shards' separated by "
        "commas (devices spread over them in turn) [start one].",
    )
    emulate.add_argument(
        "--db", help="websocket: that coordinator's state file (to follow rounds)."
    )
    emulate.add_argument(
        "--data",
        metavar="NPZ",
        help="Devices' data from this table file (dandelion data convert; docs/emulation.md).",
    )
    emulate.add_argument(
        "--trace",
        metavar="FILE",
        help="Replay when devices are online, their bandwidth and speed from this session "
        "trace, CSV or JSON (in-process; docs/emulation.md).",
    )
    emulate.add_argument(
        "--out",
        metavar="DIR",
        help="Write result.json, rounds.csv, model.safetensors, rounds.svg, timing.json and "
        "timing.csv (docs/emulation.md, Results).",
    )
    emulate.add_argument("--max-wall-s", type=float, default=0.0, help="Stop after this [none].")
    emulate.add_argument("--json", action="store_true", help="End with one JSON object.")
    _add_with(emulate)


def _add_with(parser: argparse.ArgumentParser, *, into_wheel: bool = False) -> None:
    what = (
        "Put this pure-Python task package (a package folder, a .py module or an importable "
        "name) into the worker wheel; repeatable."
        if into_wheel
        else "Import this task package of your own (a package folder, a .py module or an "
        "importable name) for its objectives and models; repeatable."
    )
    parser.add_argument(
        "--with", dest="with_plugins", action="append", metavar="PATH_OR_PACKAGE", help=what
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "with_plugins", None):
            from .plugins import PluginError, use_plugins

            try:
                args.plugins = use_plugins(args.with_plugins)
            except PluginError as exc:
                print(f"dandelion {_command(args)}: {exc}", file=sys.stderr)
                return 2
        if args.command == "serve":
            return _serve(args)
        if args.command == "task":
            return _task(args)
        if args.command == "demo":
            return _demo(args)
        if args.command in ("backup", "restore"):
            return _backup(args)
        if args.command == "token":
            return _token(args)
        if args.command == "bundle":
            return _bundle(args)
        if args.command == "privacy":
            return _privacy(args)
        if args.command == "emulate":
            return _emulate(args)
        if args.command == "model":
            return _model(args)
        if args.command == "data":
            return run_data(args)
    except SettingsError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        status = _operator_error(exc)
        if status is None:
            raise  # a bug: the traceback is what a report needs
        print(f"dandelion {_command(args)}: {exc}", file=sys.stderr)
        return status
    return 2


def _operator_error(exc: Exception) -> int | None:
    """The exit status of an error the operator can act on; None for anything else."""
    from .serving import ServingError
    from .storage import StorageError
    from .storage.lease import LeaseError, LeaseHeldError
    from .storage.location import StateURLError
    from .storage.pg_migrations import SchemaError
    from .storage.statefile import StateFileError

    if isinstance(exc, LeaseHeldError | ServingError):
        return 1  # something else holds the file or the port: it may let go
    if isinstance(exc, StateFileError | LeaseError | StateURLError | SchemaError):
        return 2  # the file must be restored, or --db (its folder, its URL) corrected
    if isinstance(exc, StorageError):
        return 1  # the disk failed
    return None


def _command(args: argparse.Namespace) -> str:
    sub = (
        getattr(args, "task_command", None)
        or getattr(args, "token_command", None)
        or getattr(args, "model_command", None)
        or getattr(args, "data_command", None)
    )
    return f"{args.command} {sub}" if sub else str(args.command)


def _settings(args: argparse.Namespace) -> Settings:
    names = {s.name for s in SETTINGS}
    return load_settings(overrides={k: v for k, v in vars(args).items() if k in names})


def _serve(args: argparse.Namespace) -> int:
    from .serve_cli import serve

    return serve(_settings(args), args.task_files, create=args.create)


def _task(args: argparse.Namespace) -> int:
    return run_task(args, lambda: _settings(args))


def _backup(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .backup import BackupError, backup, restore
    from .storage.location import is_postgres_url

    db = _settings(args).db
    if is_postgres_url(db):
        print(
            f"dandelion {args.command}: a PostgreSQL state is backed up and restored with "
            "PostgreSQL's own pg_dump and pg_restore (docs/operations.md, Backups)",
            file=sys.stderr,
        )
        return 2
    try:
        info = backup(db, args.dest) if args.command == "backup" else restore(args.source, db)
    except BackupError as exc:
        print(f"dandelion {args.command}: {exc}", file=sys.stderr)
        return 1
    what = f"backed up {db} to {info.path}" if args.command == "backup" else f"restored {db}"
    line = (
        f"{what}: {info.bytes / 1e6:.1f} MB, {info.tasks} tasks, {info.model_versions} model "
        f"versions, {info.events} events; integrity ok ({info.seconds:.2f} s)"
    )
    _print(asdict(info), args.json, line)
    return 0


def _token(args: argparse.Namespace) -> int:
    import re
    import time

    from .api.auth import hash_token, new_token
    from .serve_cli import migrating
    from .storage import ConflictError
    from .storage.location import open_state

    db = _settings(args).db
    with migrating(f"token {args.token_command}", db):
        store = open_state(db)
    try:
        if args.token_command == "create":
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.name):
                print("dandelion token: a name is 1-64 of A-Z a-z 0-9 _ . -", file=sys.stderr)
                return 2
            secret = new_token()
            try:
                store.add_admin_token(args.name, hash_token(secret), time.time())
            except ConflictError:
                print(f"dandelion token: a token named {args.name!r} exists", file=sys.stderr)
                return 2
            # Shown once: only its hash is kept.
            _print({"name": args.name, "token": secret}, args.json, secret)
            if not args.json:
                print(
                    f"(token {args.name!r}: store it now, it is not shown again)", file=sys.stderr
                )
        elif args.token_command == "list":
            rows: list[dict[str, Any]] = [
                {"name": n, "created_at": at} for n, at in store.list_admin_tokens()
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in [] if args.json else rows:
                made = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["created_at"]))
                print(f"{row['name']}\tcreated {made} UTC")
        elif not store.revoke_admin_token(args.name):
            print(f"dandelion token: no token named {args.name!r}", file=sys.stderr)
            return 1
        else:
            _print({"revoked": args.name}, args.json, f"revoked {args.name}")
    finally:
        store.close()
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bundle import BundleError, assemble_bundle, assemble_extension

    settings = _settings(args)
    plugins = getattr(args, "plugins", [])
    try:
        if args.extension:
            out = Path(args.out or "worker-extension")
            info = assemble_extension(out, args.coordinator_url, args.pyodide, plugins)
        else:
            out = Path(args.out or settings.bundle_dir)
            info = assemble_bundle(out, args.pyodide, plugins)
    except BundleError as exc:
        print(f"dandelion bundle: {exc}", file=sys.stderr)
        return 2
    summary = {
        "path": str(out),
        "plugins": [p.name for p in plugins],
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


def _privacy(args: argparse.Namespace) -> int:
    from .privacy_cli import epsilon_report, ftrl_report

    needed = "--tree" if args.mechanism == "dp_ftrl" else "--q"
    if getattr(args, needed.removeprefix("--")) is None:
        print(
            f"dandelion privacy epsilon: {needed} is required with --mechanism {args.mechanism}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.mechanism == "dp_ftrl":
            report = ftrl_report(args.noise, args.tree, args.rounds, args.delta)
        else:
            report = epsilon_report(args.q, args.noise, args.rounds, args.delta, args.accountant)
    except ValueError as exc:
        print(f"dandelion privacy epsilon: {exc}", file=sys.stderr)
        return 2
    if args.mechanism == "dp_ftrl":
        plan = f"DP-FTRL, tree {args.tree}"
        accountant = "RDP accountant, REPLACE_SPECIAL"
    else:
        plan, accountant = f"q = {args.q:g}", f"{args.accountant.upper()} accountant"
    line = (
        f"ε = {report['epsilon']:.4f} after {args.rounds} rounds ({plan}, "
        f"z = {args.noise:g}, δ = {args.delta:g}; {accountant})"
    )
    _print(report, args.json, line)
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
    if args.db is not None and args.db.startswith(("postgresql://", "postgres://")):
        print(
            "dandelion demo: --db is a SQLite file (the demo keeps its own state)", file=sys.stderr
        )
        return 2
    if args.db is None:
        result = asyncio.run(run_demo(options))
    else:
        from .storage.lease import StateLease
        from .storage.statefile import inspect_state_file

        # The demo's coordinator writes --db: like `serve`, it must be the only writer.
        with StateLease(args.db, command="demo"):
            if Path(args.db).exists():
                inspect_state_file(args.db)
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


def _emulate(args: argparse.Namespace) -> int:
    from .coordinator import TaskConfigError, load_task_file
    from .emulation import (
        EmulateOptions,
        EmulationError,
        PopulationConfig,
        PopulationConfigError,
        emulate,
        load_population,
        write_results,
    )
    from .emulation.localdata import TableSource
    from .emulation.population import default_task
    from .emulation.trace import load_trace

    try:
        config = load_population(args.population) if args.population else PopulationConfig()
        source = TableSource(args.data) if args.data else None
        trace = load_trace(args.trace) if args.trace else None
        if args.workers is None and not _sets_size(args.population):
            # A table or a trace says how many devices there are.
            args.workers = source.devices if source is not None else None
            args.workers = args.workers or (trace.devices if trace is not None else None)
        changes = {
            k: v
            for k, v in {"size": args.workers, "rounds": args.rounds, "seed": args.seed}.items()
            if v is not None
        }
        raw = config.to_dict()
        for section, values in _nest(changes).items():
            raw[section] = {**raw[section], **values}
        config = PopulationConfig.from_dict(raw)
        task = load_task_file(args.task).to_dict() if args.task else dict(config.task)
        if args.cohort is not None:
            task = task or default_task(args.cohort, config.rounds)
            rounds = dict(task.get("rounds", {}))
            rounds.update(goal=args.cohort, min_reports=max(1, (4 * args.cohort) // 5))
            task["rounds"] = rounds
        if task:
            task["rounds"] = {**task.get("rounds", {}), "max_rounds": config.rounds}
        options = EmulateOptions(
            mode=args.mode,
            backend=args.backend,
            processes=args.processes,
            ray_address=args.ray_address,
            url=args.url,
            db=args.db,
            progress=True,  # on standard error, in every mode: stdout keeps the summary
            max_wall_s=args.max_wall_s,
            plugins=tuple(getattr(args, "plugins", [])),
        )
        result = emulate(config, options, task=task or None, source=source, trace=trace)
    except (PopulationConfigError, TaskConfigError, EmulationError) as exc:
        print(f"dandelion emulate: {exc}", file=sys.stderr)
        return 2
    summary = result.summary()
    if args.out:
        summary["files"] = write_results(result, args.out)
    if args.json:
        print(json.dumps(summary))
    else:
        quality = f"final accuracy {summary['final_accuracy']}"
        if summary["final_accuracy"] is None and summary["final_loss"] is not None:
            quality = f"final loss {summary['final_loss']}"  # a regression task
        print(
            f"{summary['rounds']} rounds, {summary['reports']} updates from {config.size} "
            f"emulated workers in {summary['wall_s']:.1f} s ({summary['clients_per_s']:.0f} "
            f"clients/s); {quality}; peak memory "
            f"{summary['peak_rss_mb']:.0f} MB"
            + (
                f"; stopped: {summary['stopped']}"
                if summary["stopped"] != "rounds_completed"
                else ""
            )
        )
    return 0 if summary["rounds"] >= config.rounds else 1


def _model(args: argparse.Namespace) -> int:
    from .export import ExportError
    from .model_cli import export_model

    try:
        info = export_model(_settings(args).db, args.task, args.version, args.format, args.out)
    except ExportError as exc:
        print(f"dandelion model export: {exc}", file=sys.stderr)
        return 2
    line = (
        f"exported task {info['task']} version {info['version']} to {info['path']} "
        f"({info['format']}, {info['param_count']} parameters, {info['bytes']} bytes)"
    )
    _print(info, args.json, line)
    return 0


def _sets_size(population: str | None) -> bool:
    """Whether the population file gives ``population.size`` (it has been read once already,
    so it parses)."""
    if not population:
        return False
    import tomllib

    text = Path(population).read_text()
    raw = json.loads(text) if population.endswith(".json") else tomllib.loads(text)
    section = raw.get("population", {})
    return isinstance(section, dict) and "size" in section


def _nest(changes: dict[str, Any]) -> dict[str, Any]:
    sections = {"size": "population", "seed": "population", "rounds": "run"}
    out: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        out.setdefault(sections[key], {})[key] = value
    return out


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
