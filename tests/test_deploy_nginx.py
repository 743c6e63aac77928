"""The shipped nginx configuration, run for real (Debian's nginx) with a self-signed
certificate in front of a real coordinator: CPython workers complete a round over wss://,
and the HTTP side (health, dashboard, admin API) answers through it."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from .conftest import Live, LiveFactory, free_port, scaled, small_task

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test, which installs it with apt")
    return path


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        [
            _tool("openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def render(conf: str, *, upstream: int, https: int, http: int, cert: Path, key: Path) -> str:
    """deploy/nginx/dandelion.conf with this test's ports and certificate (and no IPv6)."""
    out = conf.replace("server 127.0.0.1:8750;", f"server 127.0.0.1:{upstream};")
    out = re.sub(r"^\s*listen \[::\].*\n", "", out, flags=re.MULTILINE)
    out = out.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    out = out.replace("listen 80;", f"listen 127.0.0.1:{http};")
    out = out.replace("/etc/letsencrypt/live/fl.example.org/fullchain.pem", str(cert))
    out = out.replace("/etc/letsencrypt/live/fl.example.org/privkey.pem", str(key))
    assert str(cert) in out and f":{https} ssl" in out, "the shipped config changed shape"
    return out


class Nginx:
    def __init__(self, folder: Path, site: str) -> None:
        self.folder = folder
        (folder / "logs").mkdir()
        (folder / "site.conf").write_text(site)
        (folder / "nginx.conf").write_text(
            f"""
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/logs/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/site.conf;
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int) -> None:
        binary = _tool("nginx")
        conf = ["-p", str(self.folder), "-c", str(self.folder / "nginx.conf")]
        check = subprocess.run([binary, *conf, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([binary, *conf, "-g", "daemon off;"])
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("nginx did not start: " + self.log())

    def log(self) -> str:
        path = self.folder / "logs" / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nginx_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "nginx"
    folder.mkdir()
    return folder


async def test_a_round_completes_through_nginx_over_wss(
    live: LiveFactory, nginx_folder: Path
) -> None:
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig
    from dandelion.taskspec.models import Example

    server: Live = await live(trusted_proxies="127.0.0.1", max_connections_per_address=4)
    await server.coordinator.add_task(small_task(goal=2, min_reports=2, max_rounds=2))
    upstream = int(server.url.split(":")[2].split("/")[0])
    https, http = free_port(), free_port()
    cert, key = _certificate(nginx_folder)
    site = render(
        (ROOT / "deploy" / "nginx" / "dandelion.conf").read_text(),
        upstream=upstream,
        https=https,
        http=http,
        cert=cert,
        key=key,
    )
    proxy = Nginx(nginx_folder, site)
    proxy.start(https)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        data = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]
        url = f"wss://127.0.0.1:{https}/ws"
        workers = [
            Worker(
                CPythonHost(ssl=context),
                WorkerConfig(url, worker_id=f"tls-worker-{i}"),
                lambda *_: data,
            )
            for i in range(2)
        ]
        statuses = await asyncio.wait_for(
            asyncio.gather(*(w.run(max_updates=2) for w in workers)), scaled(40)
        )
        assert [s.updates_accepted for s in statuses] == [2, 2]
        await server.wait_rounds(2)
        assert server.coordinator.tasks["t1"].model_version == 2

        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{https}/healthz", ssl=context) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with session.get(f"https://127.0.0.1:{https}/dashboard", ssl=context) as resp:
                assert resp.status == 200 and "Dandelion" in await resp.text()
                assert resp.headers.get("Strict-Transport-Security")
            async with session.get(f"https://127.0.0.1:{https}/api/v1/tasks", ssl=context) as resp:
                assert resp.status == 401  # the token check is the coordinator's, behind nginx
            async with session.get(f"http://127.0.0.1:{http}/ws", allow_redirects=False) as resp:
                assert resp.status == 301 and resp.headers["Location"].startswith("https://")
        # Plain ws:// to the TLS port is not spoken.
        with pytest.raises(Exception):  # noqa: B017 - any handshake failure will do
            await CPythonHost(open_timeout=5).connect(f"ws://127.0.0.1:{https}/ws")
        access = (nginx_folder / "logs" / "access.log").read_text()
        assert 'GET /ws HTTP/1.1" 101' in access  # the upgrade went through nginx
    finally:
        proxy.stop()
    assert "emerg" not in proxy.log()
