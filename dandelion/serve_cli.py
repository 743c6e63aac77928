"""How ``dandelion serve`` starts, and the rules every command follows for the state file.

The start of ``serve``, in order — each refusal is one line on standard error, exit status 2
when the command line or a file must change, 1 when something else is in the way:

1. the port is a port, ``trusted_proxies`` parses, every ``--task`` file reads and parses (2);
2. the state file exists — or is asked for, with ``--create`` or ``--task`` — in a folder that
   exists (2): a typo in ``--db`` must not start an empty coordinator beside the real state;
3. an existing file is SQLite and Dandelion's, not another program's database (2);
4. the lease on it (``storage/lease.py``) is free, and is then held for the process's life (1);
5. the port binds (1, ``serving.py``);
6. ``PRAGMA quick_check`` passes (2), or the new file is created and migrated, and said so;
7. the application starts and serves until SIGTERM or SIGINT.

Other commands open the state file through :func:`migrating`: beside a running coordinator
they only read or make small writes through SQLite's own locking, but one that would apply
schema migrations must hold the lease while it does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .coordinator import TaskConfig

__all__ = ["fail", "load_task", "migrating", "print_result", "serve"]


def fail(command: str, message: object, status: int) -> int:
    """Print ``dandelion COMMAND: message`` on standard error; return ``status``."""
    print(f"dandelion {command}: {message}", file=sys.stderr)
    return status


def print_result(info: dict[str, Any], as_json: bool, line: str | None) -> None:
    """A command's result: ``info`` as JSON (``--json``), else ``line``, else key: value."""
    if as_json:
        print(json.dumps(info, indent=2))
    elif line is not None:
        print(line)
    else:
        for key, value in info.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def load_task(path: str) -> TaskConfig:
    """A task file, or TaskConfigError naming it (also for a file that is not text)."""
    from .coordinator import TaskConfigError, load_task_file

    try:
        return load_task_file(path)
    except UnicodeDecodeError:
        raise TaskConfigError(f"{path}: not a UTF-8 text file (task files are TOML)") from None


@contextlib.contextmanager
def migrating(command: str, db: str) -> Iterator[None]:
    """Hold the state file's lease while this command's store would migrate its schema.

    Raises LeaseHeldError while a coordinator holds a file that needs migrations, and
    StateFileError for a file that is not Dandelion's (its migrations would write into another
    program's database).
    """
    from .storage.lease import LeaseHeldError
    from .storage.location import state_lease
    from .storage.statefile import pending_migrations

    pending = pending_migrations(db)
    if not pending:
        yield
        return
    lease = state_lease(db, command=command)
    try:
        lease.acquire()
    except LeaseHeldError as exc:
        what = f"needs schema migrations ({', '.join(pending)}) and "
        raise LeaseHeldError(db, exc.holder, what=what) from None
    try:
        yield
    finally:
        lease.release()


def serve(settings: Settings, task_files: Sequence[str], *, create: bool) -> int:
    """Run ``dandelion serve`` to its end; the exit status.

    Raises, for the CLI to print in one line: StateFileError (a foreign or corrupt file),
    LeaseHeldError (another coordinator), ServingError (the port), StorageError.
    """
    from .app import make_app
    from .bundle.contents import read_bundle_tasks, use_bundle_plugins
    from .coordinator import TaskConfigError
    from .serving import ServingError, check_port, run_server
    from .storage import SQLiteStore
    from .storage.lease import StateLease
    from .storage.location import is_postgres_url
    from .storage.statefile import inspect_state_file
    from .transport.limits import parse_networks

    bundle = read_bundle_tasks(settings.bundle_dir)
    if bundle is not None:
        use_bundle_plugins(bundle)  # tasks are configured with the plugin code browsers run
    try:
        check_port(settings.port)
        parse_networks(settings.trusted_proxies)
    except (ServingError, ValueError) as exc:
        return fail("serve", exc, 2)
    try:
        configs = [load_task(f) for f in task_files]
    except (TaskConfigError, ValueError) as exc:
        # A plugin the bundle lacks fails the parse too: name it as the bundle's refusal.
        raw = [needs for needs in map(_raw_needs, task_files) if needs[1]]
        return fail("serve", _bundle_refusal(bundle, settings.bundle_dir, raw) or exc, 2)
    if is_postgres_url(settings.db):
        return _serve_postgres(settings, configs, bundle, create=create)
    db = Path(settings.db)
    refusal = _bundle_refusal(bundle, settings.bundle_dir, _task_needs(configs, db))
    if refusal is not None:
        return fail("serve", refusal, 2)
    if not db.exists():
        if not db.parent.is_dir():
            return fail("serve", f"the folder {db.parent} of the state file {db} does not exist", 2)
        if not (create or configs):
            return fail("serve", f"state file {db} does not exist; pass --create to make it", 2)
    else:
        inspect_state_file(db)  # not SQLite, or another program's: refused before any lock file

    def prepare() -> None:  # once the port is bound: a refused start leaves no new file
        if db.exists():
            inspect_state_file(db, quick_check=True)
        else:
            SQLiteStore(str(db)).close()  # a new file, migrated, under the lease
            print(f"dandelion: created a new state file {db}", flush=True)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    # One writer: the lease is held until this process ends (the kernel drops it on any death).
    with StateLease(db, command="serve"):
        app = make_app(settings, tasks=configs)
        run_server(app, settings, before_start=prepare, on_ready=_print_listening)
    return 0


def _serve_postgres(
    settings: Settings,
    configs: Sequence[TaskConfig],
    bundle: dict[str, Any] | None,
    *,
    create: bool,
) -> int:
    """``serve --db postgresql://…``: steps 2 to 4 and 6 of the start, for a database.

    The database must exist (PostgreSQL's own ``createdb`` makes it) and hold Dandelion's
    state, or be empty and asked for with ``--create`` or ``--task`` (2); another program's
    tables or a newer schema are refused (2); the lease is an advisory lock (``pg_lease.py``).
    """
    from .app import make_app
    from .serving import run_server
    from .storage.location import open_state, redacted, state_lease
    from .storage.pg_migrations import SchemaError
    from .storage.postgres import PostgresStore

    shown = redacted(settings.db)
    probe = open_state(settings.db, readonly=True, command="serve")  # StorageError: unreachable
    assert isinstance(probe, PostgresStore)
    try:
        applied = probe.applied_migrations()
        tasks = [] if not applied else probe.list_tasks()
    except SchemaError as exc:
        return fail("serve", f"{shown}: {exc}", 2)
    finally:
        probe.close()
    needs = [(c.name, c.objective, c.model.kind) for c in configs]
    needs += [_needs_of(t.name, t.config) for t in tasks if t.status != "archived"]
    refusal = _bundle_refusal(bundle, settings.bundle_dir, needs)
    if refusal is not None:
        return fail("serve", refusal, 2)
    if not applied and not (create or configs):
        return fail(
            "serve", f"the database {shown} holds no Dandelion state; pass --create to make it", 2
        )

    def prepare() -> None:  # once the port is bound, under the lease
        if not applied:
            open_state(settings.db, command="serve").close()  # migrated: Dandelion's tables
            print(f"dandelion: created a new state in {shown}", flush=True)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    if settings.cluster:
        from .cluster import ClusterError, check
        from .coordinator.coordination import cluster_refusal

        for config in configs:
            if (reason := cluster_refusal(config)) is not None:
                return fail("serve", f"task {config.name}: {reason}", 2)

        try:
            check(settings.cluster)
        except ClusterError as exc:
            return fail("serve", exc, 2)
    # A cluster's shards share the lease: K of them write the database, nobody else does.
    with state_lease(settings.db, command="serve", shared=bool(settings.cluster)):
        app = make_app(settings, tasks=configs)
        run_server(app, settings, before_start=prepare, on_ready=_print_listening)
    return 0


def _bundle_refusal(
    bundle: dict[str, Any] | None, bundle_dir: str, needs: Iterable[tuple[str, str, str]]
) -> str | None:
    """The one line refusing the first task whose objective or model the served bundle (or, with
    none served, this process) lacks; None when every task can run."""
    from .bundle.contents import missing, near_miss, unknown_here

    for name, objective, kind in needs:
        if bundle is not None:
            lacking = missing(bundle, objective, kind)
            hint = near_miss(bundle, objective, kind)
            where = f"{bundle_dir} (rebuild it: dandelion bundle --with PACKAGE){hint}"
        else:
            lacking, where = unknown_here(objective, kind), "(dandelion bundle --with PACKAGE)"
        if lacking is not None:
            return f"task {name}: {lacking} {where}"
    return None


def _raw_needs(path: str) -> tuple[str, str, str]:
    """``(name, objective, model kind)`` as a task file that failed to parse spells them; empty
    strings for what it lacks or when it does not read."""
    import tomllib

    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except (OSError, ValueError):
        return "", "", ""
    model = raw.get("model")
    kind = model.get("kind", "") if isinstance(model, dict) else ""
    name, objective = raw.get("name", path), raw.get("objective", "")
    return str(name), str(objective) if isinstance(objective, str) else "", str(kind)


def _task_needs(configs: Sequence[TaskConfig], db: Path) -> list[tuple[str, str, str]]:
    """``(task, objective, model kind)`` of every task ``serve`` would run: the ``--task`` files
    and the state file's tasks that are not archived (read-only; nothing is migrated)."""
    import json
    import sqlite3

    needs = [(c.name, c.objective, c.model.kind) for c in configs]
    if not db.exists():
        return needs
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "select name, config from tasks where status != 'archived'"
            ).fetchall()
    except sqlite3.Error:
        return needs  # a new or foreign file: inspect_state_file says what is wrong
    needs += [_needs_of(name, json.loads(config)) for name, config in rows]
    return needs


def _needs_of(name: str, config: dict[str, Any]) -> tuple[str, str, str]:
    """``(task, objective, model kind)`` of a stored task's config."""
    return name, str(config.get("objective")), str(config.get("model", {}).get("kind"))


def _print_listening(addresses: list[tuple[str, int]]) -> None:
    host, port = addresses[0]
    shown = f"[{host}]" if ":" in host else host
    print(f"dandelion: coordinator on http://{shown}:{port} (workers: /ws)", flush=True)
