"""The baseline for ``ingest.py``: an aiohttp WebSocket server that only moves the bytes.

Same server settings as the coordinator's endpoint (no deflate, same size limit, heartbeat).
It speaks just enough of the worker's exchange for a client to time it as it times the
coordinator: a text message holding ``"checkin"`` is answered with a task message shaped like
the coordinator's and a model frame of ``D`` float32 values (the same bytes the coordinator
sends); a binary message (an update frame) is answered with a tiny ack; other text (the
update's own message, a hello) is read and left. It parses nothing, validates nothing, keeps no
session and no aggregate: the model frame is encoded once at start and sent as it is.

    python benchmarks/bare_ws_server.py PORT [D]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dandelion.protocol import FrameHeader, encode_frame

__all__ = ["model_frame", "task_text"]

TASK = "bench"


def task_text(d: int, rnd: int, nonce: str) -> str:
    """A task message with the fields the coordinator's carries for the benchmark's task."""
    return json.dumps(
        {
            "type": "task",
            "v": 1,
            "task": TASK,
            "round": rnd,
            "nonce": nonce,
            "model_version": rnd - 1,
            "model": {
                "kind": "logreg",
                "num_features": d - 1,
                "num_classes": 2,
                "hidden": 0,
                "param_count": d,
            },
            "objective": "revisit_7d",
            "features": {"num_buckets": d - 21, "horizon_days": 7.0},
            "hyper": {"learning_rate": 0.1, "epochs": 1, "batch_size": 16, "clip_norm": 1.0},
            "update_dtype": "float32",
            "deadline_s": 600.0,
        }
    )


def model_frame(d: int) -> bytes:
    """A model frame of ``d`` float32 zeros, header and all, as the coordinator frames one."""
    header = FrameHeader("model", TASK, 1, "nonce-000000-000000", "float32", (d,))
    return encode_frame(header, bytes(4 * d))


def make_app(d: int) -> web.Application:
    frame = model_frame(d)

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=20.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        rounds = 0
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_str('{"type":"ack","v":1}')
            elif msg.type is WSMsgType.TEXT and '"checkin"' in msg.data:
                rounds += 1
                await ws.send_str(task_text(d, rounds, f"nonce-{id(ws) % 10**6:06d}-{rounds:06d}"))
                await ws.send_bytes(frame)
        return ws

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "tasks": 1})

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    d = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    web.run_app(make_app(d), host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
