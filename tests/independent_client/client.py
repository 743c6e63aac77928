"""An independent Dandelion worker, protocol version 1, from ``schemas/README.md`` alone.

Standard library plus ``websockets``. One connection: ``hello`` → ``welcome``, ``checkin`` →
``task`` + model frame (``come_back``: wait a uniform random time in the window, check in again),
one local SGD pass of a ``logreg`` model on synthetic sparse data (other kinds: a small random
delta), clip, ``update`` + update frame, then the answer (``ack`` or ``reject``).
"""

from __future__ import annotations

import array
import asyncio
import json
import math
import random
import secrets
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

VERSION = 1
MAX_HEADER = 4096
ITEMSIZE = {"float32": 4, "float16": 2}
HEADER_KEYS = frozenset({"v", "type", "task", "round", "nonce", "dtype", "shape"})

Message = dict[str, Any]


class ProtocolError(Exception):
    """The coordinator sent something the contract does not allow."""


def new_worker_id() -> str:
    """A random pseudonymous id: 16 characters of ``A-Z a-z 0-9 _ -``."""
    return secrets.token_urlsafe(12)


# --- tensor frames -------------------------------------------------------------------------


def pack_values(values: Sequence[float], dtype: str) -> bytes:
    """Little-endian IEEE 754 bytes of ``values``."""
    if dtype == "float16":
        return struct.pack(f"<{len(values)}e", *values)
    arr = array.array("f", values)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def unpack_values(data: bytes, dtype: str) -> list[float]:
    if dtype == "float16":
        return list(struct.unpack(f"<{len(data) // 2}e", data))
    arr = array.array("f")
    arr.frombytes(data)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tolist()


def encode_frame(header: Message, payload: bytes, *, header_len: int | None = None) -> bytes:
    """``uint32 LE H`` + H bytes of JSON header, space-padded so ``4 + H`` is a multiple of 8,
    then the values. ``header_len`` overrides H (to build a lying frame in tests)."""
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    text += b" " * (-(4 + len(text)) % 8)
    return struct.pack("<I", len(text) if header_len is None else header_len) + text + payload


def decode_frame(data: bytes) -> tuple[Message, bytes]:
    """Split a frame into header and value bytes, enforcing every frame rule of the README."""
    if len(data) < 4:
        raise ProtocolError("frame shorter than its length prefix")
    (hlen,) = struct.unpack_from("<I", data)
    if hlen > MAX_HEADER or 4 + hlen > len(data):
        raise ProtocolError(f"frame header length {hlen} impossible for {len(data)} bytes")
    # Receivers must not require the 8-byte alignment (README, Tensor frames).
    header = json.loads(data[4 : 4 + hlen].decode("utf-8"))
    if not isinstance(header, dict) or set(header) != HEADER_KEYS or header["v"] != 1:
        raise ProtocolError(f"bad frame header {header!r}")
    if header["dtype"] not in ITEMSIZE:
        raise ProtocolError(f"bad frame dtype {header['dtype']!r}")
    count = math.prod(header["shape"])
    payload = data[4 + hlen :]
    if len(payload) != count * ITEMSIZE[header["dtype"]]:
        raise ProtocolError(f"frame carries {len(payload)} value bytes, header says {count}")
    return header, payload


# --- local training ------------------------------------------------------------------------


@dataclass
class Update:
    delta: list[float]
    num_examples: int
    metrics: dict[str, float]
    norm: float
    unclipped: bool


def clip(delta: list[float], clip_norm: float) -> tuple[list[float], float, bool]:
    """Scale ``delta`` to L2 norm ``clip_norm`` when longer; returns (clipped, norm, unclipped)."""
    norm = math.sqrt(math.fsum(d * d for d in delta))
    if norm <= clip_norm:
        return delta, norm, True
    scale = clip_norm / norm
    return [d * scale for d in delta], norm, False


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def train(task: Message, model: list[float], *, seed: int = 0, n: int = 24) -> Update:
    """One local training run. ``logreg``: SGD on ``n`` synthetic sparse examples, per the
    README's parameter layout; other kinds: a small random delta (no data to train on)."""
    rng = random.Random(seed)
    hyper = task["hyper"]
    kind, features = task["model"]["kind"], task["model"]["num_features"]
    if kind != "logreg":
        delta = [rng.gauss(0.0, 0.01) for _ in model]
        clipped, norm, unclipped = clip(delta, hyper["clip_norm"])
        return Update(clipped, 1, {}, norm, unclipped)
    data: list[tuple[list[tuple[int, float]], int]] = []
    for _ in range(n):
        x = [(rng.randrange(features), rng.uniform(-1.0, 1.0)) for _ in range(4)]
        data.append((x, int(sum(v for i, v in x if i % 2 == 0) > 0)))

    def predict(w: list[float], x: list[tuple[int, float]]) -> float:
        return _sigmoid(w[features] + sum(w[i] * v for i, v in x))

    eps = 1e-7
    probs = [predict(model, x) for x, _ in data]
    loss = -sum(
        math.log(max(p if y else 1 - p, eps)) for p, (_, y) in zip(probs, data, strict=True)
    )
    acc = sum((p > 0.5) == bool(y) for p, (_, y) in zip(probs, data, strict=True))
    w = list(model)
    lr, l2, bs = hyper["learning_rate"], hyper.get("l2", 0.0), hyper["batch_size"]
    for _ in range(hyper["epochs"]):
        rng.shuffle(data)
        for start in range(0, n, bs):
            batch = data[start : start + bs]
            grad: dict[int, float] = {}
            for x, y in batch:
                err = predict(w, x) - y
                for i, v in x:
                    grad[i] = grad.get(i, 0.0) + err * v
                grad[features] = grad.get(features, 0.0) + err
            for i, g in grad.items():
                w[i] -= lr * g / len(batch)
            if l2:
                for i in range(features):
                    w[i] -= lr * l2 * w[i]
    delta = [a - b for a, b in zip(w, model, strict=True)]
    clipped, norm, unclipped = clip(delta, hyper["clip_norm"])
    return Update(clipped, n, {"loss": loss / n, "accuracy": acc / n}, norm, unclipped)


# --- the conversation ----------------------------------------------------------------------


class Client:
    """One worker connection. Methods follow the README's conversation step by step."""

    def __init__(self, ws: ClientConnection, worker_id: str) -> None:
        self.ws = ws
        self.worker_id = worker_id
        self.welcome: Message = {}

    @classmethod
    async def open(cls, url: str, worker_id: str | None = None) -> Client:
        # No permessage-deflate (README: the coordinator declines it); models may exceed the
        # library's default 1 MiB receive limit.
        ws = await connect(url, compression=None, max_size=2**28, open_timeout=5)
        return cls(ws, worker_id or new_worker_id())

    async def close(self) -> None:
        await self.ws.close()

    @property
    def v(self) -> int:
        """The connection's version: every message after the welcome carries welcome.v."""
        return int(self.welcome.get("v", VERSION))

    async def send(self, msg: Message) -> None:
        await self.ws.send(json.dumps(msg, separators=(",", ":"), allow_nan=False))

    async def recv(self, timeout: float = 5.0) -> Message | bytes:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, bytes):
            return raw
        msg = json.loads(raw, parse_constant=_refuse_constant)
        if not isinstance(msg, dict) or "type" not in msg:
            raise ProtocolError(f"not a control message: {raw[:200]!r}")
        return msg

    async def recv_control(self, timeout: float = 5.0) -> Message:
        msg = await self.recv(timeout)
        if isinstance(msg, bytes):
            raise ProtocolError("binary frame where a control message was due")
        return msg

    async def hello(
        self, consent: str = "opted_in", versions: Sequence[int] = (VERSION,)
    ) -> Message:
        """Send ``hello``; returns ``welcome`` (kept in ``self.welcome``) or ``reject``."""
        await self.send(
            {
                "type": "hello",
                "v": max(versions),
                "worker_id": self.worker_id,
                "versions": list(versions),
                "runtime": {"kind": "cpython", "version": sys.version.split()[0]},
                "consent": consent,
                "client": "independent_client/1",
            }
        )
        answer = await self.recv_control()
        if answer["type"] == "welcome":
            self.welcome = answer
        return answer

    async def checkin_once(self) -> tuple[Message, list[float] | None]:
        """One ``checkin``: (``task``, model values) or (``come_back``, None)."""
        await self.send({"type": "checkin", "v": self.v})
        answer = await self.recv_control()
        if answer["type"] != "task":
            return answer, None
        frame = await self.recv()
        if not isinstance(frame, bytes):
            raise ProtocolError(f"expected the model frame after task, got {frame!r}")
        header, payload = decode_frame(frame)
        want = (
            "model",
            answer["task"],
            answer["round"],
            "float32",
            [answer["model"]["param_count"]],
        )
        got = (header["type"], header["task"], header["round"], header["dtype"], header["shape"])
        if got != want:
            raise ProtocolError(f"model frame {got} does not match task {want}")
        return answer, unpack_values(payload, "float32")

    async def checkin(self, max_wait_s: float = 10.0) -> tuple[Message, list[float]]:
        """Check in until a task arrives, waiting a uniform random time in each retry window."""
        loop = asyncio.get_running_loop()
        stop = loop.time() + max_wait_s
        while True:
            answer, model = await self.checkin_once()
            if model is not None:
                return answer, model
            if answer["type"] != "come_back":
                raise ProtocolError(f"checkin answered by {answer!r}")
            window = answer["retry_window"]
            wait = random.uniform(window["min_s"], window["max_s"])
            if loop.time() + wait > stop:
                raise TimeoutError(f"no task within {max_wait_s} s (last: {answer!r})")
            await asyncio.sleep(wait)

    def update_message(self, task: Message, upd: Update) -> Message:
        return {
            "type": "update",
            "v": self.v,
            "task": task["task"],
            "round": task["round"],
            "nonce": task["nonce"],
            "num_examples": upd.num_examples,
            "metrics": upd.metrics,
            "unclipped": upd.unclipped,
            "norm": upd.norm,
        }

    def update_frame(self, task: Message, delta: Sequence[float]) -> bytes:
        dtype = task["update_dtype"]
        header = {
            "v": 1,
            "type": "update",
            "task": task["task"],
            "round": task["round"],
            "nonce": task["nonce"],
            "dtype": dtype,
            "shape": [len(delta)],
        }
        return encode_frame(header, pack_values(delta, dtype))

    async def send_update(self, task: Message, upd: Update) -> Message:
        """``update`` then at once its frame; returns the answer (``ack`` or ``reject``)."""
        frame = self.update_frame(task, upd.delta)
        limit = self.welcome.get("max_message_bytes")
        if limit is not None and len(frame) > limit:
            raise ProtocolError(f"update frame of {len(frame)} bytes exceeds {limit}")
        await self.send(self.update_message(task, upd))
        await self.ws.send(frame)
        return await self.recv_control()


def _refuse_constant(name: str) -> float:
    raise ProtocolError(f"{name} is not JSON")


@dataclass
class Outcome:
    welcome: Message
    task: Message
    model: list[float]
    answer: Message


async def run_once(url: str, worker_id: str | None = None) -> Outcome:
    """The whole conversation once: hello, checkin, train, update, answer; then close."""
    client = await Client.open(url, worker_id)
    try:
        welcome = await client.hello()
        if welcome["type"] != "welcome":
            raise ProtocolError(f"hello answered by {welcome!r}")
        task, model = await client.checkin()
        answer = await client.send_update(task, train(task, model))
        return Outcome(welcome, task, model, answer)
    finally:
        await client.close()


if __name__ == "__main__":
    print(asyncio.run(run_once(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8750/ws")))
