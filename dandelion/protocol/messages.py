"""Control messages: one frozen dataclass per message type, and their JSON encoding.

Rules of this file: it knows the shape of each message and nothing of when it may be sent (that
is ``states.py``). Parsing here checks what the Python types need; the coordinator validates every
inbound message against ``schemas/`` before it gets here, so these checks are the floor, not the
contract. Unknown fields in a message are ignored here (a worker must ignore fields a newer
coordinator adds); the coordinator's schema check refuses them on the way in.

Numbers are the exception: every number a parser here reads is checked against its range in
:data:`RANGES`, the same ranges ``schemas/`` declares (``tests/test_schemas.py`` keeps the two
equal; schemas/README.md, section Numbers, documents them). So a worker that parses without
the schemas (in Pyodide) gets the same answer, and no value that reaches the coordinator can
overflow a float or a sum: an integer of hundreds of digits, ``1e400`` (read as infinity) or a
metric of ``1e308`` is out of range and refused, naming the field.

Raises :class:`~dandelion.protocol.errors.MessageError` for text that is not a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from . import jsontext
from .errors import MessageError
from .versions import PROTOCOL_VERSION, SUPPORTED_VERSIONS

__all__ = [
    "EVAL_SUMS",
    "MAX_INT32",
    "MAX_SAFE_INTEGER",
    "MESSAGE_TYPES",
    "RANGES",
    "TASK_KINDS",
    "Ack",
    "Checkin",
    "ComeBack",
    "Error",
    "EvalReport",
    "Hello",
    "Message",
    "OptOut",
    "Range",
    "Reject",
    "RetryWindow",
    "Task",
    "Update",
    "Welcome",
    "encode_message",
    "parse_message",
]

Json = dict[str, Any]

#: The largest integer every peer holds exactly (JavaScript numbers are IEEE 754 doubles).
MAX_SAFE_INTEGER = 2**53 - 1
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Range:
    """The values a number of the wire contract may take: ``lo <= x <= hi`` (``lo < x`` when
    ``lo_open``). NaN and the infinities are in no range."""

    lo: int | float
    hi: int | float
    lo_open: bool = False

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        # Comparing an int with a float is exact in Python: no float(huge int) overflow here.
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and value <= self.hi

    def __str__(self) -> str:
        return f"{'(' if self.lo_open else '['}{_plain_number(self.lo)}, {_plain_number(self.hi)}]"

    def refuse(self, label: str, value: int | float) -> MessageError:
        """The error for ``value`` of field ``label``, outside this range (or NaN)."""
        how = (
            "too large" if value > self.hi else "too small" if value <= self.lo else "not a number"
        )
        return MessageError(f"field {label!r} is {how}: its range is {self}")


def _plain_number(x: int | float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


#: The range of every number in a control message, by field (``retry_window.min_s``: inside
#: ``retry_window``; ``versions[]``: each item; ``metrics{}``: each value). The schemas in
#: ``schemas/`` declare exactly these as ``minimum`` / ``exclusiveMinimum`` / ``maximum``.
RANGES: dict[str, Range] = {
    "v": Range(1, 255),
    "versions[]": Range(1, 255),
    "round": Range(1, MAX_SAFE_INTEGER),
    "model_version": Range(0, MAX_SAFE_INTEGER),
    "num_examples": Range(1, MAX_INT32),
    "metrics{}": Range(-1e9, 1e9),
    "norm": Range(0, 1e9),
    "deadline_s": Range(0, 31_536_000, lo_open=True),
    "heartbeat_s": Range(0, 86_400, lo_open=True),
    "max_message_bytes": Range(1, MAX_INT32),
    "retry_window.min_s": Range(0, 86_400),
    "retry_window.max_s": Range(0, 86_400),
    # An evaluation task's holdout and per-worker bounds, and an eval_report's sums.
    "evaluation.holdout": Range(0, 0.9, lo_open=True),
    "evaluation.max_examples": Range(1, 1_000_000),
    "evaluation.max_loss": Range(0, 1000, lo_open=True),
    "metrics.count": Range(1, MAX_INT32),
    "metrics.loss_sum": Range(0, 1e9),
    "metrics.correct": Range(0, MAX_INT32),
}

#: What a task asks of the worker: train on it and send an update, or score it and send an
#: eval_report (schemas/README.md, "Evaluation").
TASK_KINDS = ("train", "evaluate")
#: The sums an eval_report carries, all three always.
EVAL_SUMS = ("count", "loss_sum", "correct")


@dataclass(frozen=True, slots=True)
class RetryWindow:
    """When to come back: the worker waits a uniformly random time in [min_s, max_s]."""

    min_s: float
    max_s: float

    def to_dict(self) -> Json:
        return {"min_s": self.min_s, "max_s": self.max_s}

    @classmethod
    def from_dict(cls, raw: Any) -> RetryWindow:
        lo = _number(raw, "min_s", RANGES["retry_window.min_s"], "retry_window.min_s")
        hi = _number(raw, "max_s", RANGES["retry_window.max_s"], "retry_window.max_s")
        if not lo <= hi:
            raise MessageError("retry_window needs min_s <= max_s")
        return cls(lo, hi)


class Message:
    """Base of every control message: ``type`` names it on the wire, ``v`` is the version."""

    type: ClassVar[str]
    v: int

    def to_dict(self) -> Json:
        raise NotImplementedError


def _fields(msg: Any, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> Json:
    out: Json = {"type": msg.type, "v": msg.v}
    for name in names:
        out[name] = _plain(getattr(msg, name))
    for name in optional:
        value = getattr(msg, name)
        if value is not None:
            out[name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, RetryWindow):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True)
class Hello(Message):
    type: ClassVar[str] = "hello"
    worker_id: str
    runtime: Json
    consent: Literal["opted_in", "opted_out"]
    versions: tuple[int, ...] = SUPPORTED_VERSIONS
    client: str | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, ("worker_id", "versions", "runtime", "consent"), ("client",))


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    session: str
    heartbeat_s: float
    max_message_bytes: int
    update_dtypes: tuple[str, ...] = ("float32",)
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, ("session", "heartbeat_s", "max_message_bytes", "update_dtypes"))


@dataclass(frozen=True, slots=True)
class Reject(Message):
    type: ClassVar[str] = "reject"
    reason: str
    detail: str
    task: str | None = None
    round: int | None = None
    nonce: str | None = None
    versions: tuple[int, ...] | None = None
    retry_window: RetryWindow | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(
            self,
            ("reason", "detail"),
            ("task", "round", "nonce", "versions", "retry_window"),
        )


@dataclass(frozen=True, slots=True)
class Checkin(Message):
    type: ClassVar[str] = "checkin"
    eligibility: Json | None = None
    tasks: tuple[str, ...] | None = None
    capabilities: Json | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, (), ("eligibility", "tasks", "capabilities"))


@dataclass(frozen=True, slots=True)
class Task(Message):
    """An assignment. The model's parameters follow in one binary frame of type ``model``."""

    type: ClassVar[str] = "task"
    task: str
    round: int
    nonce: str
    model_version: int
    model: Json
    objective: str
    hyper: Json
    deadline_s: float
    update_dtype: str = "float32"
    features: Json | None = None
    #: "train" (absent on the wire: an update answers) or "evaluate" (an eval_report answers).
    kind: str = "train"
    #: With a task that evaluates: ``holdout``, the fraction of local examples held out of
    #: training, and the per-worker bounds of an eval_report, ``max_examples`` and ``max_loss``.
    evaluation: Json | None = None
    #: A secure round (docs/secure_aggregation.md): the worker answers the SecAgg+ phases, not
    #: with an update. Absent on the wire for every other task.
    secure: bool = False
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        out = _fields(
            self,
            (
                "task",
                "round",
                "nonce",
                "model_version",
                "model",
                "objective",
                "hyper",
                "update_dtype",
                "deadline_s",
            ),
            ("features", "evaluation"),
        )
        if self.kind != "train":  # a training task is sent as before: old workers read it
            out["kind"] = self.kind
        if self.secure:
            out["secure"] = True
        return out


@dataclass(frozen=True, slots=True)
class ComeBack(Message):
    type: ClassVar[str] = "come_back"
    retry_window: RetryWindow
    reason: str
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, ("retry_window", "reason"))


@dataclass(frozen=True, slots=True)
class Update(Message):
    """A report. The update's values follow in one binary frame of type ``update``."""

    type: ClassVar[str] = "update"
    task: str
    round: int
    nonce: str
    num_examples: int
    unclipped: bool
    metrics: Json = field(default_factory=dict)
    norm: float | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(
            self, ("task", "round", "nonce", "num_examples", "metrics", "unclipped"), ("norm",)
        )


@dataclass(frozen=True, slots=True)
class EvalReport(Message):
    """The answer to a task of kind ``evaluate``: sums over the worker's held-out examples
    (``count``, ``loss_sum``, ``correct``), nothing per example. No frame follows."""

    type: ClassVar[str] = "eval_report"
    task: str
    round: int
    nonce: str
    metrics: Json
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, ("task", "round", "nonce", "metrics"))


@dataclass(frozen=True, slots=True)
class Ack(Message):
    type: ClassVar[str] = "ack"
    task: str
    round: int
    nonce: str
    retry_window: RetryWindow | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, ("task", "round", "nonce"), ("retry_window",))


@dataclass(frozen=True, slots=True)
class OptOut(Message):
    type: ClassVar[str] = "opt_out"
    reason: str | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, (), ("reason",))


@dataclass(frozen=True, slots=True)
class Error(Message):
    type: ClassVar[str] = "error"
    code: str
    detail: str
    fatal: bool = False
    ref_type: str | None = None
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> Json:
        return _fields(self, ("code", "detail", "fatal"), ("ref_type",))


def encode_message(msg: Message) -> str:
    """The compact JSON text of ``msg``."""
    return jsontext.dumps(msg.to_dict())


def parse_message(text: str | bytes | object) -> Message:
    """Parse a text frame (or an already-decoded object) into its message dataclass."""
    raw: object = text
    if isinstance(text, str | bytes):
        try:
            raw = jsontext.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MessageError("a control message must be a JSON object")
    mtype = raw.get("type")
    builder = _BUILDERS.get(mtype) if isinstance(mtype, str) else None
    if builder is None:
        raise MessageError(f"unknown message type {mtype!r}", ref_type=None)
    v = raw.get("v")
    if type(v) is not int or v not in RANGES["v"]:
        raise MessageError(f"field 'v' must be an integer in {RANGES['v']}", ref_type=mtype)
    try:
        msg: Message = builder(raw)
        return msg
    except MessageError as exc:
        exc.ref_type = mtype
        raise
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise MessageError(f"{mtype}: {exc}", ref_type=mtype) from None


# -- field readers: each raises MessageError naming the field ------------------------------


def _get(raw: Any, name: str) -> Any:
    if not isinstance(raw, dict) or name not in raw:
        raise MessageError(f"missing field {name!r}")
    return raw[name]


def _str(raw: Any, name: str) -> str:
    value = _get(raw, name)
    if not isinstance(value, str):
        raise MessageError(f"field {name!r} must be a string")
    return value


def _int(raw: Any, name: str) -> int:
    value = _get(raw, name)
    if type(value) is not int:
        raise MessageError(f"field {name!r} must be an integer")
    if value not in RANGES[name]:
        raise RANGES[name].refuse(name, value)
    return value


def _number(raw: Any, name: str, limit: Range | None = None, label: str | None = None) -> float:
    """A number in its range (``RANGES[name]`` unless ``limit`` is given) as a float."""
    value = _get(raw, name)
    label = label or name
    if type(value) not in (int, float):
        raise MessageError(f"field {label!r} must be a number")
    limit = limit or RANGES[name]
    if value not in limit:  # before float(): an integer of hundreds of digits overflows it
        raise limit.refuse(label, value)
    return float(value)


def _metrics(raw: Any, name: str) -> Json:
    """An object of named numbers, each in ``RANGES["metrics{}"]`` (kept as sent)."""
    value = _obj(raw, name)
    limit = RANGES["metrics{}"]
    for key, item in value.items():
        if type(item) not in (int, float):
            raise MessageError(f"field '{name}.{key}' must be a number")
        if item not in limit:
            raise limit.refuse(f"{name}.{key}", item)
    return value


def _eval_sums(raw: Any, name: str) -> Json:
    """An eval_report's ``metrics``: the three sums, each of its type and in its range."""
    value = _obj(raw, name)
    out: Json = {}
    for key in EVAL_SUMS:
        label = f"{name}.{key}"
        if key == "loss_sum":
            out[key] = _number(value, key, RANGES[label], label)
            continue
        item = value.get(key)
        if type(item) is not int:
            raise MessageError(f"field {label!r} must be an integer")
        if item not in RANGES[label]:
            raise RANGES[label].refuse(label, item)
        out[key] = item
    return out


def _kind(raw: Any, name: str) -> str:
    value = _str(raw, name)
    if value not in TASK_KINDS:
        raise MessageError(f"field {name!r} must be one of {list(TASK_KINDS)}")
    return value


def _evaluation(raw: Any, name: str) -> Json:
    """A task's ``evaluation``: ``holdout``, ``max_examples``, ``max_loss``, in their ranges."""
    value = _obj(raw, name)
    holdout = _number(value, "holdout", RANGES[f"{name}.holdout"], f"{name}.holdout")
    most = value.get("max_examples")
    limit = RANGES[f"{name}.max_examples"]
    if type(most) is not int or most not in limit:
        raise MessageError(f"field '{name}.max_examples' must be an integer in {limit}")
    max_loss = _number(value, "max_loss", RANGES[f"{name}.max_loss"], f"{name}.max_loss")
    return {"holdout": holdout, "max_examples": most, "max_loss": max_loss}


def _bool(raw: Any, name: str) -> bool:
    value = _get(raw, name)
    if type(value) is not bool:
        raise MessageError(f"field {name!r} must be true or false")
    return bool(value)


def _obj(raw: Any, name: str) -> Json:
    value = _get(raw, name)
    if not isinstance(value, dict):
        raise MessageError(f"field {name!r} must be an object")
    return value


def _opt(reader: Any, raw: Json, name: str) -> Any:
    return reader(raw, name) if raw.get(name) is not None else None


def _ints(raw: Any, name: str) -> tuple[int, ...]:
    value = _get(raw, name)
    limit = RANGES[f"{name}[]"]
    if not isinstance(value, list) or not all(type(x) is int and x in limit for x in value):
        raise MessageError(f"field {name!r} must be a list of integers, each in {limit}")
    return tuple(value)


def _strs(raw: Any, name: str) -> tuple[str, ...]:
    value = _get(raw, name)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise MessageError(f"field {name!r} must be a list of strings")
    return tuple(value)


def _window(raw: Json, name: str) -> RetryWindow:
    return RetryWindow.from_dict(_obj(raw, name))


_BUILDERS: dict[str, Any] = {
    "hello": lambda r: Hello(
        worker_id=_str(r, "worker_id"),
        runtime=_obj(r, "runtime"),
        consent=_str(r, "consent"),  # type: ignore[arg-type]
        versions=_ints(r, "versions"),
        client=_opt(_str, r, "client"),
        v=r["v"],
    ),
    "welcome": lambda r: Welcome(
        session=_str(r, "session"),
        heartbeat_s=_number(r, "heartbeat_s"),
        max_message_bytes=_int(r, "max_message_bytes"),
        update_dtypes=_strs(r, "update_dtypes"),
        v=r["v"],
    ),
    "reject": lambda r: Reject(
        reason=_str(r, "reason"),
        detail=_str(r, "detail"),
        task=_opt(_str, r, "task"),
        round=_opt(_int, r, "round"),
        nonce=_opt(_str, r, "nonce"),
        versions=_opt(_ints, r, "versions"),
        retry_window=_opt(_window, r, "retry_window"),
        v=r["v"],
    ),
    "checkin": lambda r: Checkin(
        eligibility=_opt(_obj, r, "eligibility"),
        tasks=_opt(_strs, r, "tasks"),
        capabilities=_opt(_obj, r, "capabilities"),
        v=r["v"],
    ),
    "task": lambda r: Task(
        task=_str(r, "task"),
        round=_int(r, "round"),
        nonce=_str(r, "nonce"),
        model_version=_int(r, "model_version"),
        model=_obj(r, "model"),
        objective=_str(r, "objective"),
        hyper=_obj(r, "hyper"),
        update_dtype=_str(r, "update_dtype"),
        deadline_s=_number(r, "deadline_s"),
        features=_opt(_obj, r, "features"),
        kind=_kind(r, "kind") if r.get("kind") is not None else "train",
        evaluation=_opt(_evaluation, r, "evaluation"),
        secure=_bool(r, "secure") if r.get("secure") is not None else False,
        v=r["v"],
    ),
    "come_back": lambda r: ComeBack(
        retry_window=_window(r, "retry_window"), reason=_str(r, "reason"), v=r["v"]
    ),
    "update": lambda r: Update(
        task=_str(r, "task"),
        round=_int(r, "round"),
        nonce=_str(r, "nonce"),
        num_examples=_int(r, "num_examples"),
        unclipped=_bool(r, "unclipped"),
        metrics=_metrics(r, "metrics"),
        norm=_opt(_number, r, "norm"),
        v=r["v"],
    ),
    "eval_report": lambda r: EvalReport(
        task=_str(r, "task"),
        round=_int(r, "round"),
        nonce=_str(r, "nonce"),
        metrics=_eval_sums(r, "metrics"),
        v=r["v"],
    ),
    "ack": lambda r: Ack(
        task=_str(r, "task"),
        round=_int(r, "round"),
        nonce=_str(r, "nonce"),
        retry_window=_opt(_window, r, "retry_window"),
        v=r["v"],
    ),
    "opt_out": lambda r: OptOut(reason=_opt(_str, r, "reason"), v=r["v"]),
    "error": lambda r: Error(
        code=_str(r, "code"),
        detail=_str(r, "detail"),
        fatal=_bool(r, "fatal"),
        ref_type=_opt(_str, r, "ref_type"),
        v=r["v"],
    ),
}

#: Every control message type, by its wire name.
MESSAGE_TYPES: frozenset[str] = frozenset(_BUILDERS)
