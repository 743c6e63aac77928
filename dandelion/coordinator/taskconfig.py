"""A task's configuration: model, local training, server optimizer, round plan, privacy and
secure aggregation.

Read from a TOML file (``dandelion task create FILE``) or a dict (the API). Every field is
checked here, once, so the rest of the coordinator can trust it. See ``docs/tasks.md`` for the
file format and ``examples/revisit-7d.toml`` for a complete example.

Raises :class:`TaskConfigError` naming the offending field.
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..aggregation.optimizers import OPTIMIZERS
from ..privacy import PrivacyConfig, PrivacyConfigError
from ..taskspec.models import ModelSpec
from ..taskspec.tables import unknown_key
from .secure_config import SecureAggregationPlan, parse_secure_aggregation
from .taskmodel import MODEL_KEYS, resolve_task_model

__all__ = [
    "EvaluationPlan",
    "RoundPlan",
    "ServerConfig",
    "TaskConfig",
    "TaskConfigError",
    "load_task_file",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_OBJECTIVE = re.compile(r"^(?:[a-z0-9_]{1,64}|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*)$")


class TaskConfigError(ValueError):
    """A task configuration that cannot run, with the field at fault in the message."""


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """How a round selects, waits and closes.

    ``goal``: reports that close the round early. ``over_selection``: assign up to
    ``ceil(goal * over_selection)`` workers to absorb dropouts. ``min_reports``: fewer reports
    than this at the deadline abandon the round (it is retried from the same model).
    ``deadline_s``: the reporting deadline, enforced by a timer. ``max_rounds``: stop after this
    many completed rounds (0: never). ``report_timeout_s``: an assigned worker that has not
    reported this long is released and its slot given to another (0: 1.25 times the slowest report
    of the round so far, once five have arrived).
    """

    goal: int = 100
    over_selection: float = 1.3
    min_reports: int = 0
    deadline_s: float = 300.0
    max_rounds: int = 0
    report_timeout_s: float = 0.0

    @property
    def max_assigned(self) -> int:
        return math.ceil(self.goal * self.over_selection)

    @property
    def minimum(self) -> int:
        """Reports needed at the deadline; 0 in the file means "80% of the goal"."""
        return self.min_reports or max(1, math.ceil(0.8 * self.goal))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Server-side aggregation: optimizer, weighting and the server's own clipping bound."""

    optimizer: str = "fedavg"
    optimizer_params: dict[str, float] = field(default_factory=dict)
    weighting: str = "examples"
    max_examples: int = 0
    clip_norm: float = 0.0  # 0: the task's local clip_norm


@dataclass(frozen=True, slots=True)
class EvaluationPlan:
    """Evaluation rounds (the ``[evaluation]`` table): after every ``every`` completed training
    rounds, one round in which workers score the latest model on the ``holdout`` fraction of
    their local examples (never trained on) and send back sums. ``goal``, ``min_reports`` and
    ``deadline_s`` work as in :class:`RoundPlan`; one report counts at most ``max_examples``
    examples and ``max_loss`` per example. ``noise_multiplier`` (with ``[privacy]`` only, else
    None): z of the Gaussian noise on each released sum, in units of that sum's bound."""

    every: int
    holdout: float = 0.2
    goal: int = 100
    min_reports: int = 0
    deadline_s: float = 300.0
    max_examples: int = 100
    max_loss: float = 10.0
    noise_multiplier: float | None = None

    def rounds(self, training: RoundPlan) -> RoundPlan:
        """An evaluation round's plan: its own goal, minimum and deadline; the rest as the
        training rounds'."""
        return RoundPlan(
            goal=self.goal,
            over_selection=training.over_selection,
            min_reports=self.min_reports,
            deadline_s=self.deadline_s,
            report_timeout_s=training.report_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class TaskConfig:
    name: str
    objective: str
    model: ModelSpec
    hyper: dict[str, Any]
    rounds: RoundPlan
    server: ServerConfig
    features: dict[str, Any] = field(default_factory=dict)
    eligibility: dict[str, bool] = field(default_factory=dict)
    update_dtype: str = "float32"
    init_seed: int = 0
    privacy: PrivacyConfig | None = None  # DP-FedAvg when set (the [privacy] table)
    #: Whether ``GET /models/{name}`` publishes the released model (docs/models.md).
    public_model: bool = True
    evaluation: EvaluationPlan | None = None  # evaluation rounds (the [evaluation] table)
    #: SecAgg+ (the [secure_aggregation] table; docs/secure_aggregation.md).
    secure_aggregation: SecureAggregationPlan | None = None

    @property
    def clip_norm(self) -> float:
        """The L2 bound the server clips every update to, whatever the worker claims (with
        adaptive clipping: the first round's bound)."""
        return self.server.clip_norm or float(self.hyper["clip_norm"])

    def to_dict(self) -> dict[str, Any]:
        """The task file's structure: ``from_dict(config.to_dict()) == config``."""
        server = self.server
        return {
            "name": self.name,
            "objective": self.objective,
            "update_dtype": self.update_dtype,
            "init_seed": self.init_seed,
            "features": dict(self.features),
            "model": self.model.to_dict(),
            "hyper": dict(self.hyper),
            "server": {
                "optimizer": server.optimizer,
                "weighting": server.weighting,
                "max_examples": server.max_examples,
                "clip_norm": server.clip_norm,
                **server.optimizer_params,
            },
            "rounds": asdict(self.rounds),
            "eligibility": dict(self.eligibility),
            **({"privacy": self.privacy.to_dict()} if self.privacy is not None else {}),
            "public_model": self.public_model,
            **({"evaluation": _evaluation_dict(self.evaluation)} if self.evaluation else {}),
            **(
                {"secure_aggregation": self.secure_aggregation.to_dict()}
                if self.secure_aggregation is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TaskConfig:
        return _parse(raw)


def load_task_file(path: str | Path) -> TaskConfig:
    """Read and check a TOML task file."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaskConfigError(f"{path}: {exc}") from None
    return _parse(raw)


#: The keys of a task file's top level, and of the tables whose keys are fixed.
_TOP = (
    "name",
    "objective",
    "update_dtype",
    "init_seed",
    "features",
    "model",
    "hyper",
    "server",
    "rounds",
    "eligibility",
    "privacy",
    "public_model",
    "evaluation",
    "secure_aggregation",
)
_HYPER = ("learning_rate", "epochs", "batch_size", "clip_norm", "l2")
_ROUNDS = (
    "goal",
    "over_selection",
    "min_reports",
    "deadline_s",
    "max_rounds",
    "report_timeout_s",
)
_SERVER = ("optimizer", "weighting", "max_examples", "clip_norm")
_ELIGIBILITY = ("idle", "charging", "unmetered")
_TABLES = {
    "rounds": _ROUNDS,
    "hyper": _HYPER,
    "model": MODEL_KEYS,
    "server": _SERVER,
    "eligibility": _ELIGIBILITY,
}


def _strict(where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    problem = unknown_key(where, table, known)
    if problem is not None:
        raise TaskConfigError(problem)


def _parse(raw: dict[str, Any]) -> TaskConfig:
    for key in raw:
        # A table's key written at the top level: say which table it belongs in.
        home = [t for t, keys in _TABLES.items() if key in keys and key not in _TOP]
        if home:
            raise TaskConfigError(f"{key}: unknown top-level key; did you mean [{home[0]}] {key}?")
    _strict("", raw, _TOP)
    name = _req(raw, "name", str)
    if not _NAME.match(name):
        raise TaskConfigError(f"name {name!r}: use 1-64 of a-z 0-9 _ - (starting a-z0-9)")
    objective = _req(raw, "objective", str)
    if not _OBJECTIVE.match(objective):
        raise TaskConfigError(
            f"objective {objective!r}: a registered name (a-z 0-9 _) or package.module:attribute"
        )
    try:
        features, model = resolve_task_model(
            objective, dict(_table(raw, "features")), dict(_table(raw, "model"))
        )
    except ValueError as exc:
        raise TaskConfigError(str(exc)) from None
    hyper = _hyper(_table(raw, "hyper"))
    rounds = _rounds(_table(raw, "rounds"))
    server = _server(_table(raw, "server"))
    eligibility = {}
    _strict("eligibility.", _table(raw, "eligibility"), _ELIGIBILITY)
    for key, value in _table(raw, "eligibility").items():
        if key not in ("idle", "charging", "unmetered") or not isinstance(value, bool):
            raise TaskConfigError(f"eligibility.{key}: idle/charging/unmetered booleans only")
        eligibility[key] = value
    dtype = raw.get("update_dtype", "float32")
    if dtype not in ("float32", "float16"):
        raise TaskConfigError("update_dtype: float32 or float16")
    seed = raw.get("init_seed", 0)
    if type(seed) is not int:
        raise TaskConfigError("init_seed: an integer")
    public_model = raw.get("public_model", True)
    if not isinstance(public_model, bool):
        raise TaskConfigError("public_model: true or false")
    privacy = None
    if "privacy" in raw:
        privacy = _privacy(_table(raw, "privacy"), rounds)
        # User-level DP bounds what one user adds to the sum: weight 1, norm <= C.
        if _table(raw, "server").get("weighting", "uniform") != "uniform":
            raise TaskConfigError(
                'server.weighting: must be "uniform" with [privacy] (each user adds one '
                "clipped update of weight 1)"
            )
        server = ServerConfig(
            server.optimizer, server.optimizer_params, "uniform", 0, server.clip_norm
        )
    evaluation = _evaluation(raw, rounds, privacy)
    secure = _secure(raw, rounds, server, privacy, dtype, model.param_count, hyper)
    if secure is not None:  # the sum of the survivors over their count: no weights
        server = ServerConfig(
            server.optimizer, server.optimizer_params, "uniform", 0, server.clip_norm
        )
    return TaskConfig(
        name,
        objective,
        model,
        hyper,
        rounds,
        server,
        features,
        eligibility,
        dtype,
        seed,
        privacy,
        public_model,
        evaluation,
        secure,
    )


def _secure(
    raw: dict[str, Any],
    rounds: RoundPlan,
    server: ServerConfig,
    privacy: PrivacyConfig | None,
    dtype: str,
    dimension: int,
    hyper: dict[str, Any],
) -> SecureAggregationPlan | None:
    """The ``[secure_aggregation]`` table (None when absent), and what it rules out: the
    coordinator sees only the sum, so it cannot weigh, clip or count bits of one update."""
    if "secure_aggregation" not in raw:
        return None
    table = _table(raw, "secure_aggregation")
    if dtype != "float32":
        raise TaskConfigError(
            "update_dtype: float32 with [secure_aggregation] (the masked vector is uint32)"
        )
    if _table(raw, "server").get("weighting", "uniform") != "uniform":
        raise TaskConfigError(
            'server.weighting: must be "uniform" with [secure_aggregation] (a weight would '
            "reveal one worker's number of examples; the sum is divided by its count)"
        )
    if privacy is not None and privacy.clipping != "fixed":
        raise TaskConfigError(
            'privacy.clipping: "fixed" with [secure_aggregation] (adaptive clipping needs each '
            "update's unclipped bit, which the coordinator no longer sees)"
        )
    clip = server.clip_norm or float(hyper["clip_norm"])
    try:
        return parse_secure_aggregation(
            table, largest=rounds.max_assigned, dimension=dimension, clip_norm=clip
        )
    except ValueError as exc:
        raise TaskConfigError(str(exc)) from None


_EVALUATION = (
    "every",
    "holdout",
    "goal",
    "min_reports",
    "deadline_s",
    "max_examples",
    "max_loss",
    "noise_multiplier",
)


def _evaluation(
    raw: dict[str, Any], rounds: RoundPlan, privacy: PrivacyConfig | None
) -> EvaluationPlan | None:
    """The ``[evaluation]`` table (None when absent). The bounds keep one report's loss_sum
    within the wire contract's 10^9 (max_loss x max_examples <= 10^9)."""
    if "evaluation" not in raw:
        return None
    table = _table(raw, "evaluation")
    _strict("evaluation.", table, _EVALUATION)
    if "every" not in table:
        raise TaskConfigError("evaluation.every: required (evaluate after every N rounds)")
    z = None
    if privacy is not None:
        z = _num("evaluation", table, "noise_multiplier", privacy.noise_multiplier, 1e-6, 1e6)
    elif "noise_multiplier" in table:
        raise TaskConfigError("evaluation.noise_multiplier: only with [privacy]")
    holdout = table.get("holdout", 0.2)
    if type(holdout) not in (int, float) or not 0 < holdout <= 0.9:
        raise TaskConfigError("evaluation.holdout: a fraction in (0, 0.9]")
    plan = EvaluationPlan(
        every=_int("evaluation", table, "every", 1, 1, 1_000_000),
        holdout=float(holdout),
        goal=_int("evaluation", table, "goal", rounds.goal, 1, 10_000_000),
        min_reports=_int("evaluation", table, "min_reports", rounds.min_reports, 0, 10_000_000),
        deadline_s=_num("evaluation", table, "deadline_s", rounds.deadline_s, 0.01, 31_536_000),
        max_examples=_int("evaluation", table, "max_examples", 100, 1, 1_000_000),
        max_loss=_num("evaluation", table, "max_loss", 10.0, 1e-6, 1000.0),
        noise_multiplier=z,
    )
    if plan.min_reports > plan.goal:
        raise TaskConfigError("evaluation.min_reports: must not exceed evaluation.goal")
    return plan


def _evaluation_dict(plan: EvaluationPlan) -> dict[str, Any]:
    return {k: v for k, v in asdict(plan).items() if v is not None}


def _privacy(raw: dict[str, Any], rounds: RoundPlan) -> PrivacyConfig:
    try:
        return PrivacyConfig.from_dict(raw, expected_reports=rounds.goal)
    except PrivacyConfigError as exc:
        raise TaskConfigError(f"privacy.{exc}") from None


def _req(raw: dict[str, Any], key: str, kind: type) -> Any:
    if key not in raw:
        raise TaskConfigError(f"{key}: required")
    if not isinstance(raw[key], kind):
        raise TaskConfigError(f"{key}: must be a {kind.__name__}")
    return raw[key]


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise TaskConfigError(f"{key}: must be a table")
    return value


def _num(
    section: str, raw: dict[str, Any], key: str, default: float, lo: float, hi: float = math.inf
) -> float:
    """A finite number in [lo, hi]: the upper bounds are the wire contract's (schemas/), so a
    task never makes a message its workers refuse."""
    value = raw.get(key, default)
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        bound = f"in [{lo}, {hi:g}]" if math.isfinite(hi) else f">= {lo}"
        raise TaskConfigError(f"{section}.{key}: a number {bound}")
    return float(value)


def _int(section: str, raw: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if type(value) is not int or not lo <= value <= hi:
        raise TaskConfigError(f"{section}.{key}: an integer in [{lo}, {hi}]")
    return value


def _hyper(raw: dict[str, Any]) -> dict[str, Any]:
    _strict("hyper.", raw, _HYPER)
    hyper: dict[str, Any] = {
        "learning_rate": _num("hyper", raw, "learning_rate", 0.1, 1e-12, 1e6),
        "epochs": _int("hyper", raw, "epochs", 1, 1, 100),
        "batch_size": _int("hyper", raw, "batch_size", 16, 1, 4096),
        "clip_norm": _num("hyper", raw, "clip_norm", 1.0, 1e-12, 1e9),
    }
    if "l2" in raw:
        hyper["l2"] = _num("hyper", raw, "l2", 0.0, 0.0, 1e6)
    return hyper


def _rounds(raw: dict[str, Any]) -> RoundPlan:
    _strict("rounds.", raw, _ROUNDS)
    plan = RoundPlan(
        goal=_int("rounds", raw, "goal", 100, 1, 10_000_000),
        over_selection=_num("rounds", raw, "over_selection", 1.3, 1.0, 100.0),
        min_reports=_int("rounds", raw, "min_reports", 0, 0, 10_000_000),
        deadline_s=_num("rounds", raw, "deadline_s", 300.0, 0.01, 31_536_000),
        max_rounds=_int("rounds", raw, "max_rounds", 0, 0, 10_000_000),
        report_timeout_s=_num("rounds", raw, "report_timeout_s", 0.0, 0.0, 31_536_000),
    )
    if plan.min_reports > plan.goal:
        raise TaskConfigError("rounds.min_reports: must not exceed rounds.goal")
    return plan


def _server(raw: dict[str, Any]) -> ServerConfig:
    raw = dict(raw)
    optimizer = raw.pop("optimizer", "fedavg")
    if optimizer not in OPTIMIZERS:
        raise TaskConfigError(f"server.optimizer: one of {sorted(OPTIMIZERS)}")
    # The optimizer's own parameters are keys of [server] too.
    takes = tuple(inspect.signature(OPTIMIZERS[optimizer]).parameters)
    _strict("server.", {"optimizer": optimizer, **raw}, _SERVER + takes)
    weighting = raw.pop("weighting", "examples")
    if weighting not in ("examples", "uniform"):
        raise TaskConfigError("server.weighting: examples or uniform")
    max_examples = _int("server", raw, "max_examples", 0, 0, 10**9)
    raw.pop("max_examples", None)
    clip = _num("server", raw, "clip_norm", 0.0, 0.0, 1e9)
    raw.pop("clip_norm", None)
    params: dict[str, float] = {}
    for key, value in raw.items():
        if type(value) not in (int, float) or not math.isfinite(value):
            raise TaskConfigError(f"server.{key}: a finite number (an optimizer parameter)")
        params[key] = float(value)
    try:
        OPTIMIZERS[optimizer](**params)
    except TypeError as exc:
        raise TaskConfigError(
            f"server: {optimizer} does not take {sorted(params)}: {exc}"
        ) from None
    return ServerConfig(optimizer, params, weighting, max_examples, clip)
