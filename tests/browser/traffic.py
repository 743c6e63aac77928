"""Everything the browser asked for, recorded two ways that do not lean on each other.

- :class:`TargetRecorder` is a second DevTools client (over ``--remote-debugging-port``,
  beside Playwright's pipe). It attaches to every target as it starts — pages, an extension's
  service worker, its offscreen document and the Web Worker inside that, none of which
  Playwright's own request events show past the service worker — holds it until the Network
  domain is on, and records each request and WebSocket with the target that made it.
- :func:`netlog_requests` reads Chromium's NetLog (``--log-net-log``): the network stack's
  own record of every request that reached it, from any process, with the origin that
  initiated it. A request an extension made to the network is there whatever made it.

``chrome-extension://`` files are served inside the browser, so only the first sees them.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets

from ..conftest import scaled

__all__ = ["NetRequest", "Request", "Target", "TargetRecorder", "netlog_requests"]

# Attach to everything but the browser itself and tab wrappers (their page is attached).
_AUTO_ATTACH = {
    "autoAttach": True,
    "waitForDebuggerOnStart": True,
    "flatten": True,
    "filter": [{"type": "browser", "exclude": True}, {"type": "tab", "exclude": True}, {}],
}


@dataclass
class Target:
    target_id: str
    type: str
    url: str
    parent: str | None  # the target that started this one (a page's or document's worker)
    recorded: bool = False  # the Network domain was on before it ran


@dataclass(frozen=True, slots=True)
class Request:
    target_id: str
    url: str
    kind: str  # DevTools' resource type ("Script", "Fetch", "Document", ...) or "WebSocket"


class TargetRecorder:
    """Attach with ``await TargetRecorder.connect(profile_dir)`` right after the browser
    started and before anything of interest loads; ``await close()`` at the end."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._session_target: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.targets: dict[str, Target] = {}
        self.requests: list[Request] = []
        self.error: BaseException | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, profile_dir: Path) -> TargetRecorder:
        active = (
            profile_dir / "DevToolsActivePort"
        )  # Chromium writes it for --remote-debugging-port
        deadline = time.monotonic() + scaled(10)
        while not active.is_file() or len(active.read_text().split()) < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {active}: start Chromium with --remote-debugging-port=0")
            await asyncio.sleep(0.05)
        port, path = active.read_text().split()[:2]
        recorder = cls(await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None))
        await recorder._send("Target.setDiscoverTargets", {"discover": True})
        await recorder._send("Target.setAutoAttach", _AUTO_ATTACH)
        return recorder

    async def close(self) -> None:
        """Stop recording; raises what went wrong while recording, if anything did."""
        await self._ws.close()
        await self._reader
        for task in self._tasks:
            task.cancel()
        if self.error is not None:
            raise self.error

    def family(self, origin: str) -> list[Target]:
        """The targets on ``origin`` and every target they started (their Web Workers). A
        target counts as on ``origin`` by its URL or by the document it loaded from there (an
        offscreen document is attached before it has a URL)."""
        own = {t.target_id for t in self.targets.values() if t.url.startswith(origin)}
        own |= {
            r.target_id for r in self.requests if r.kind == "Document" and r.url.startswith(origin)
        }
        grown = True
        while grown:
            more = {t.target_id for t in self.targets.values() if t.parent in own}
            grown = not more <= own
            own |= more
        return [self.targets[t] for t in sorted(own)]

    def requests_of(self, targets: list[Target]) -> list[Request]:
        ids = {t.target_id for t in targets}
        return [r for r in self.requests if r.target_id in ids]

    async def _send(
        self, method: str, params: dict[str, Any], session: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = answer
        await self._ws.send(json.dumps(message))
        return await answer

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                self._dispatch(json.loads(raw))
        except websockets.ConnectionClosed:
            pass  # the browser went away: nothing more to record
        except Exception as exc:  # a recorder that stopped silently would prove nothing
            self.error = exc
        finally:
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(ConnectionError("the DevTools connection closed"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            answer = self._pending.pop(message["id"], None)
            if answer is not None and not answer.done():
                answer.set_result(message)
            return
        method, params = message["method"], message.get("params", {})
        target_id = self._session_target.get(message.get("sessionId", ""), "")
        if method == "Target.attachedToTarget":
            info = params["targetInfo"]
            self._session_target[params["sessionId"]] = info["targetId"]
            known = self.targets.get(info["targetId"])
            parent = target_id or (known.parent if known else None)
            target = Target(info["targetId"], info["type"], info["url"] or "", parent)
            self.targets[info["targetId"]] = target
            task = asyncio.create_task(self._watch(params["sessionId"], target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif method in ("Target.targetInfoChanged", "Target.targetCreated"):
            info = params["targetInfo"]
            known = self.targets.get(info["targetId"])
            if known is not None and info["url"]:
                known.url = info["url"]
        elif method == "Network.requestWillBeSent":
            kind = params.get("type", "Other")
            self.requests.append(Request(target_id, params["request"]["url"], kind))
        elif method == "Network.webSocketCreated":
            self.requests.append(Request(target_id, params["url"], "WebSocket"))

    async def _watch(self, session: str, target: Target) -> None:
        """Record the target's requests (and attach to the workers it starts), then let it run."""
        try:
            enabled = await self._send("Network.enable", {}, session)
            target.recorded = "error" not in enabled
            await self._send("Target.setAutoAttach", _AUTO_ATTACH, session)
            await self._send("Runtime.runIfWaitingForDebugger", {}, session)
        except ConnectionError:
            pass  # the browser closed while the target started


@dataclass(frozen=True, slots=True)
class NetRequest:
    url: str
    initiator: str  # an origin, or "not an origin" for the browser's own requests
    isolation_key: str  # the top-level site and frame site the request was made for


def netlog_requests(path: Path) -> list[NetRequest]:
    """Every request the network stack started, from a NetLog Chromium wrote on exit."""
    text = path.read_text()
    try:
        log = json.loads(text)
    except ValueError:
        # A browser that died mid-write leaves the events list open; close it.
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        NetRequest(p["url"], p.get("initiator", ""), p.get("network_isolation_key", ""))
        for event in log["events"]
        if event["type"] == start_job and "url" in (p := event.get("params", {}))
    ]
