"""A real PostgreSQL server for the tests, in a temporary folder, on a loopback port.

Debian's ``postgresql`` package (``scripts/test`` installs it) gives ``initdb`` and ``pg_ctl``
under ``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root, and the tests
may: then the server runs as the ``postgres`` user the package creates (through ``runuser``),
in a folder that user owns. Trust authentication on 127.0.0.1 only; the superuser is
``dandelion``. Every test gets a database of its own from :meth:`PostgresServer.database`.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

__all__ = ["PostgresServer", "postgres_bin"]

USER = "dandelion"


def postgres_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl`` (the newest version installed)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        # Loud on purpose: a test that needs PostgreSQL errors, it is never skipped.
        raise RuntimeError(
            "PostgreSQL is not installed: scripts/test installs it (apt-get install postgresql)"
        )
    return Path(initdb).parent


class PostgresServer:
    """``start()`` makes a cluster and starts it; ``stop()`` stops it and removes the folder."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="dandelion-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        # As root, the server's files belong to the postgres user and it runs as that user.
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self._numbers = itertools.count(1)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}{log}")

    def start(self) -> None:
        if self.run_as is not None:
            try:
                user = pwd.getpwnam(self.run_as)
            except KeyError:
                raise RuntimeError(
                    "PostgreSQL refuses to run as root and there is no postgres user: "
                    "install Debian's postgresql package (scripts/test does)"
                ) from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8"
        )
        self._start()

    def _start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def restart(self) -> None:
        """Stop the server at once, as a crash would (``-m immediate``: no shutdown checkpoint,
        every session cut), and start it again; it recovers from its WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._start()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """The URL of a new, empty database."""
        name = f"t{next(self._numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
