"""``dandelion task …``: the parser and the commands (the state-file side is ``tasks_cli.py``).

    create FILE             a new task, with its initial model
    check FILE              a task file, checked without a state file
    list [--all]            tasks, a line each (archived ones with --all)
    show NAME               one task: config and its version, status, rounds, privacy
    edit NAME FILE          the task's next config version (the next round opens with it)
    pause|resume NAME       stop or restart assignments and new rounds
    archive NAME            stop the task for good (its model versions stay readable)
    history NAME            its log and every config version it has had

Each refusal is one line on standard error: exit status 2 when the command line or the file
must change (a bad file, a refused edit or status change), 1 when there is no such task.
Beside a running ``dandelion serve`` these commands write through SQLite's own locking, like
``task create``, and the coordinator follows within two seconds (``tasks_cli.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from .serve_cli import fail as _fail
from .serve_cli import print_result as _print
from .settings import Settings

__all__ = ["add_task_parser", "run_task"]

_ONE_NAME = {
    "pause": "Pause a task: no new assignments or rounds; the open round ends by its own rule.",
    "resume": "Resume a paused task (or one that spent its budget: the budget check decides).",
    "archive": "Archive a task for good: no more rounds, hidden from `task list` (no undo).",
    "history": "A task's log (created, status changes, edits) and every config version.",
}


def add_task_parser(
    sub: Any, add_settings: Callable[..., None], add_with: Callable[..., None]
) -> None:
    """Add ``task`` and its actions to the subparsers ``sub``; ``add_settings(parser,
    only=[...])`` adds settings flags (``--db``), ``add_with(parser)`` the ``--with`` flag of
    the actions that read a task file."""
    task = sub.add_parser("task", help="Create, edit, pause, archive, list and show tasks.")
    task_sub = task.add_subparsers(dest="task_command", required=True, metavar="ACTION")
    create = task_sub.add_parser("create", help="Create a task from a TOML file.")
    create.add_argument("file", help="Task file (see docs/tasks.md).")
    lst = task_sub.add_parser("list", help="List tasks with their status and progress.")
    lst.add_argument("--all", action="store_true", help="Archived tasks too.")
    show = task_sub.add_parser("show", help="Show one task: config, rounds, model versions.")
    show.add_argument("name")
    check = task_sub.add_parser(
        "check", help="Validate a task file without a state file; exit 2 on any error."
    )
    check.add_argument("file", help="Task file (see docs/tasks.md).")
    check.add_argument("--json", action="store_true", help="Print JSON.")
    edit = task_sub.add_parser(
        "edit", help="Give a task a new config version from a TOML file (from its next round)."
    )
    edit.add_argument("name")
    edit.add_argument("file", help="The task file, changed (see docs/tasks.md).")
    edit.add_argument(
        "--allow-privacy-change",
        action="store_true",
        help="Allow a change of [privacy] on a task that has released private rounds.",
    )
    made = [create, lst, show, edit]
    for action, text in _ONE_NAME.items():
        one = task_sub.add_parser(action, help=text)
        one.add_argument("name")
        made.append(one)
    for p in (create, check, edit):
        add_with(p)
    for p in made:
        if p.prog.split()[-1] in ("edit", "pause", "resume", "archive"):
            p.add_argument("--reason", default="", help="Why, for the task's log.")
        p.add_argument("--json", action="store_true", help="Print JSON.")
        add_settings(p, only=["db"])


def run_task(args: argparse.Namespace, settings: Callable[[], Settings]) -> int:
    """Run ``dandelion task ACTION``; the exit status."""
    from .coordinator import TaskConfigError
    from .serve_cli import load_task, migrating
    from .tasks_cli import create_task_in

    command = f"task {args.task_command}"
    if args.task_command == "check":
        try:
            config = load_task(args.file)
        except TaskConfigError as exc:
            hint = ""
            if "is not known here" in str(exc) and not getattr(args, "with_plugins", None):
                hint = "; an objective or model of your own: pass its package with --with"
            return _fail(command, f"{exc}{hint}", 2)
        info = {
            "ok": True,
            "name": config.name,
            "objective": config.objective,
            "param_count": config.model.param_count,
            "mechanism": config.privacy.mechanism if config.privacy is not None else None,
        }
        _print(info, args.json, f"ok: task {config.name} ({config.model.param_count} parameters)")
        return 0
    db = settings().db
    if args.task_command == "create":
        try:
            config = load_task(args.file)
            with migrating(command, db):
                info = create_task_in(db, config)
        except (TaskConfigError, ValueError) as exc:
            return _fail(command, exc, 2)
        _print(info, args.json, f"created task {config.name} ({info['param_count']} parameters)")
        return 0
    with migrating(command, db):
        try:
            return _RUN[args.task_command](args, db)
        except KeyError as exc:
            if exc.args != (args.name,):
                raise  # a bug, not a missing task
            return _fail(command, f"no task {args.name!r}", 1)
        except ValueError as exc:  # TaskConfigError, TaskChangeError: the file or the ask
            return _fail(command, exc, 2)


def _list(args: argparse.Namespace, db: str) -> int:
    from .tasks_cli import list_tasks_in

    rows = list_tasks_in(db, archived=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        version, config = row["model_version"], row["config_version"]
        print(f"{row['name']:<24} {row['status']:<16} version {version}  config v{config}")
    if not rows:
        print("(no tasks)" if args.all else "(no tasks; --all shows archived ones)")
    return 0


def _show(args: argparse.Namespace, db: str) -> int:
    from .tasks_cli import describe_task

    shown = describe_task(db, args.name)
    if shown is None:
        raise KeyError(args.name)
    if not args.json and shown["privacy"] is not None:
        # ε never alone: its δ, mechanism, unit and assumption, in words, first.
        print(f"guarantee: {shown['privacy']['guarantee']['statement']}")
    if not args.json:
        for line in _evaluation_lines(shown["evaluations"]):
            print(line)
    _print(shown, args.json, None)
    return 0


def _evaluation_lines(evaluations: list[dict[str, Any]]) -> list[str]:
    """One line per evaluation round, newest first: the held-out loss and accuracy of the
    model version it scored (noised under [privacy]), or that it was withheld."""
    lines = []
    for e in evaluations:
        head = f"evaluation: round {e['round']}, model version {e['model_version']}"
        if e["withheld"]:
            lines.append(f"{head}: withheld ({e['reports']} report(s), below k)")
            continue
        loss = "-" if e["loss"] is None else f"{e['loss']:.4g}"
        accuracy = "-" if e["accuracy"] is None else f"{e['accuracy']:.4g}"
        noise = "" if e["noise_multiplier"] is None else f", noised (z = {e['noise_multiplier']:g})"
        lines.append(
            f"{head}: held-out loss {loss}, accuracy {accuracy} from {e['reports']} reports{noise}"
        )
    return lines


def _edit(args: argparse.Namespace, db: str) -> int:
    from .serve_cli import load_task
    from .tasks_cli import edit_task_in

    config = load_task(args.file)
    reason = _reason("edit", args.reason, f"from {args.file}")
    info = edit_task_in(
        db, args.name, config, reason=reason, allow_privacy_change=args.allow_privacy_change
    )
    version = info["config_version"]
    line = (
        f"task {args.name}: config version {version}; the next round opens with it"
        if info["changed"]
        else f"task {args.name}: unchanged (config version {version})"
    )
    _print(info, args.json, line)
    return 0


def _status(args: argparse.Namespace, db: str) -> int:
    from .tasks_cli import change_status_in

    info = change_status_in(
        db, args.name, args.task_command, reason=_reason(args.task_command, args.reason)
    )
    _print(info, args.json, f"task {args.name}: {info['status']}")
    return 0


def _history(args: argparse.Namespace, db: str) -> int:
    from .tasks_cli import history_in

    info = history_in(db, args.name)
    if info is None:
        raise KeyError(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"task {args.name}: {info['status']}, config version {info['config_version']}")
    for c in info["changes"]:
        what = c["status"] if c["change"] != "config" else f"config v{c['config_version']}"
        reason = f"  ({c['reason']})" if c["reason"] else ""
        print(f"  {_when(c['at'])}  {c['change']:<8} {what}{reason}")
    for v in info["configs"]:
        ran = (
            f"rounds {v['first_round']}-{v['last_round']}"
            if v["first_round"] is not None
            else "no rounds yet"
        )
        print(
            f"config v{v['version']} ({_when(v['created_at'])}, {ran}): {json.dumps(v['config'])}"
        )
    return 0


_RUN: dict[str, Callable[[argparse.Namespace, str], int]] = {
    "list": _list,
    "show": _show,
    "edit": _edit,
    "pause": _status,
    "resume": _status,
    "archive": _status,
    "history": _history,
}


def _reason(action: str, said: str, detail: str = "") -> str:
    by = f"{action} with dandelion task {action}" + (f" {detail}" if detail else "")
    return f"{by}: {said}" if said else by


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
