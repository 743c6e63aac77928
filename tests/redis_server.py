"""A real redis-server on loopback for the cluster tests, in a temporary folder.

Debian's ``redis-server`` (installed by scripts/test) is started on a free port with no
persistence; a machine without it fails the tests that need it, loudly, never skips them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.conftest import free_port, scaled

__all__ = ["redis_server"]


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Start redis-server in ``folder``; yield its ``redis://`` URL; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/test installs it with apt)")
    port = free_port()
    log = (folder / "redis.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + scaled(10)
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start: {folder / 'redis.log'}"
                    ) from exc
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
