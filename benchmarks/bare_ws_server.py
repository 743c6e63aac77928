"""The baseline for ``ingest.py``: an aiohttp WebSocket server that only receives.

Same server settings as the coordinator's endpoint (no deflate, same size limit, heartbeat).
For every binary message it answers a tiny text message, so clients time it exactly as they
time the coordinator's ack. Usage: ``python benchmarks/bare_ws_server.py PORT``.
"""

from __future__ import annotations

import sys

from aiohttp import WSMsgType, web


async def handle(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, heartbeat=20.0, max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await ws.send_str('{"type":"ack"}')
    return ws


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "tasks": 1})


def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
