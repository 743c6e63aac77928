"""The population file: who the emulated devices are and how they behave.

A TOML or JSON document; every table and key is optional (defaults in brackets, see
``docs/emulation.md`` for the full reference). A distribution is either a number (every device
the same) or ``{median = M, sigma = S}``: log-normal, so half the devices are below M and
``sigma`` is the spread of log(value)::

    [population]   size [1000], seed [1], initially_opted_in [1.0], opt_in_per_day [0.0],
                   opt_out_per_day [0.0]
    [data]         history_days [14.0], heterogeneity [0.5], test_users [100], zipf_s [1.1]
    [availability] mode ["diurnal" | "always"], peak_online [0.6], activity_sigma [0.4],
                   profile [24 hourly weights], time_zones [UTC offsets in minutes]
    [compute]      startup_s [{median = 2, sigma = 0.5}],
                   examples_per_s [{median = 20000, sigma = 0.8}], straggler_share [0.05],
                   straggler_slowdown [20.0]
    [network]      down_mbps [{median = 20, sigma = 1}], up_mbps [{median = 5, sigma = 1}],
                   latency_ms [{median = 60, sigma = 0.5}]
    [churn]        dropout [0.03], reconnect_s [{median = 900, sigma = 1}]
    [eligibility]  idle [1.0], charging [1.0], unmetered [1.0]  (share of devices reporting it)
    [worker]       keep_open_s [60.0]
    [task]         a task, as in docs/tasks.md (default: the revisit task below)
    [run]          rounds [10], start_hour_utc [12.0], max_virtual_s [0: no limit]

Raises :class:`PopulationConfigError` naming the field at fault.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..taskspec.tables import unknown_key

__all__ = [
    "DEFAULT_PROFILE",
    "DEFAULT_TIME_ZONES",
    "Dist",
    "PopulationConfig",
    "PopulationConfigError",
    "default_task",
    "load_population",
]

#: Relative activity by local hour (night low, lunchtime bump, evening peak).
DEFAULT_PROFILE = (
    0.3, 0.15, 0.08, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.8, 0.8, 0.9,
    1.2, 1.1, 0.9, 0.8, 0.8, 0.9, 1.1, 1.5, 1.8, 1.8, 1.4, 0.8,
)  # fmt: skip
DEFAULT_TIME_ZONES = (-480, -420, -360, -300, -240, -180, 0, 60, 120, 180, 330, 480, 540, 600)


class PopulationConfigError(ValueError):
    """A population file that cannot run, with the field at fault in the message."""


@dataclass(frozen=True, slots=True)
class Dist:
    """A log-normal distribution given by its median and the sigma of its log (0: constant)."""

    median: float
    sigma: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "sigma": self.sigma}


@dataclass(frozen=True, slots=True)
class PopulationConfig:
    size: int = 1000
    seed: int = 1
    initially_opted_in: float = 1.0
    opt_in_per_day: float = 0.0
    opt_out_per_day: float = 0.0
    history_days: float = 14.0
    heterogeneity: float = 0.5
    test_users: int = 100
    zipf_s: float = 1.1
    availability: str = "diurnal"
    peak_online: float = 0.6
    activity_sigma: float = 0.4
    profile: tuple[float, ...] = DEFAULT_PROFILE
    time_zones: tuple[int, ...] = DEFAULT_TIME_ZONES
    startup_s: Dist = Dist(2.0, 0.5)
    examples_per_s: Dist = Dist(20_000.0, 0.8)
    straggler_share: float = 0.05
    straggler_slowdown: float = 20.0
    down_mbps: Dist = Dist(20.0, 1.0)
    up_mbps: Dist = Dist(5.0, 1.0)
    latency_ms: Dist = Dist(60.0, 0.5)
    dropout: float = 0.03
    reconnect_s: Dist = Dist(900.0, 1.0)
    idle: float = 1.0
    charging: float = 1.0
    unmetered: float = 1.0
    keep_open_s: float = 60.0
    rounds: int = 10
    start_hour_utc: float = 12.0
    max_virtual_s: float = 0.0
    task: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> PopulationConfig:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PopulationConfig:
        return _parse(raw)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return v.to_dict() if isinstance(v, Dist) else list(v) if isinstance(v, tuple) else v

        out: dict[str, Any] = {}
        for section, keys in _SECTIONS.items():
            out[section] = {k: plain(getattr(self, _attr(section, k))) for k in keys}
        out["task"] = dict(self.task)
        return out


_SECTIONS: dict[str, tuple[str, ...]] = {
    "population": ("size", "seed", "initially_opted_in", "opt_in_per_day", "opt_out_per_day"),
    "data": ("history_days", "heterogeneity", "test_users", "zipf_s"),
    "availability": ("mode", "peak_online", "activity_sigma", "profile", "time_zones"),
    "compute": ("startup_s", "examples_per_s", "straggler_share", "straggler_slowdown"),
    "network": ("down_mbps", "up_mbps", "latency_ms"),
    "churn": ("dropout", "reconnect_s"),
    "eligibility": ("idle", "charging", "unmetered"),
    "worker": ("keep_open_s",),
    "run": ("rounds", "start_hour_utc", "max_virtual_s"),
}


def _attr(section: str, key: str) -> str:
    return "availability" if (section, key) == ("availability", "mode") else key


def default_task(goal: int, rounds: int) -> dict[str, Any]:
    """The emulator's default task: the revisit model, FedAvg weighted by examples."""
    return {
        "name": "emulated",
        "objective": "revisit_7d",
        "features": {"num_buckets": 1024, "horizon_days": 7.0},
        "model": {"kind": "logreg"},
        "hyper": {"learning_rate": 0.3, "epochs": 2, "batch_size": 16, "clip_norm": 10.0},
        "server": {"optimizer": "fedavg", "weighting": "examples", "max_examples": 500},
        "rounds": {
            "goal": goal,
            "over_selection": 1.3,
            "min_reports": max(1, math.ceil(0.8 * goal)),
            "deadline_s": 600.0,
            "max_rounds": rounds,
        },
    }


def load_population(path: str | Path) -> PopulationConfig:
    """Read a population file (``.json`` as JSON, anything else as TOML) and check it."""
    p = Path(path)
    try:
        text = p.read_text()
        raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise PopulationConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise PopulationConfigError(f"{path}: the top level must be a table")
    return _parse(raw)


def _parse(raw: dict[str, Any]) -> PopulationConfig:
    problem = unknown_key("", raw, [*_SECTIONS, "task"])
    if problem is not None:
        raise PopulationConfigError(problem)
    values: dict[str, Any] = {}
    base = PopulationConfig()
    for section, keys in _SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise PopulationConfigError(f"{section}: must be a table")
        problem = unknown_key(f"{section}.", table, keys)
        if problem is not None:
            raise PopulationConfigError(problem)
        for key, value in table.items():
            name = _attr(section, key)
            values[name] = _CHECKS[name](f"{section}.{key}", value)
    task = raw.get("task", {})
    if not isinstance(task, dict):
        raise PopulationConfigError("task: must be a table")
    config = replace(base, **values, task=dict(task))
    if config.availability == "diurnal" and max(config.profile) <= 0:
        raise PopulationConfigError("availability.profile: at least one hour must be > 0")
    return config


def _number(lo: float, hi: float = math.inf, *, integer: bool = False) -> Any:
    def check(name: str, value: Any) -> float | int:
        ok_type = type(value) is int if integer else type(value) in (int, float)
        if not ok_type or not math.isfinite(value) or not lo <= value <= hi:
            kind = "an integer" if integer else "a number"
            bound = f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
            raise PopulationConfigError(f"{name}: {kind} {bound}, not {value!r}")
        return int(value) if integer else float(value)

    return check


def _dist(lo: float) -> Any:
    def check(name: str, value: Any) -> Dist:
        if isinstance(value, dict):
            extra = set(value) - {"median", "sigma"}
            if extra or "median" not in value:
                raise PopulationConfigError(
                    f"{name}: a number or {{median = M, sigma = S}}, not {value!r}"
                )
            median = _number(lo)(f"{name}.median", value["median"])
            sigma = _number(0.0, 5.0)(f"{name}.sigma", value.get("sigma", 0.0))
            return Dist(median, sigma)
        return Dist(_number(lo)(name, value), 0.0)

    return check


def _mode(name: str, value: Any) -> str:
    if value not in ("diurnal", "always"):
        raise PopulationConfigError(f'{name}: "diurnal" or "always", not {value!r}')
    return str(value)


def _profile(name: str, value: Any) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) != 24
        or not all(type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in value)
    ):
        raise PopulationConfigError(f"{name}: a list of 24 numbers >= 0, one per local hour")
    return tuple(float(v) for v in value)


def _zones(name: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(type(v) is int and -14 * 60 <= v <= 14 * 60 for v in value)
    ):
        raise PopulationConfigError(f"{name}: a non-empty list of UTC offsets in minutes")
    return tuple(value)


_SHARE = _number(0.0, 1.0)
_CHECKS: dict[str, Any] = {
    "size": _number(1, 10_000_000, integer=True),
    "seed": _number(0, 2**31, integer=True),
    "initially_opted_in": _SHARE,
    "opt_in_per_day": _number(0.0),
    "opt_out_per_day": _number(0.0),
    "history_days": _number(8.0, 365.0),
    "heterogeneity": _number(1e-3),
    "test_users": _number(1, 100_000, integer=True),
    "zipf_s": _number(0.0, 5.0),
    "availability": _mode,
    "peak_online": _SHARE,
    "activity_sigma": _number(0.0, 5.0),
    "profile": _profile,
    "time_zones": _zones,
    "startup_s": _dist(1e-3),
    "examples_per_s": _dist(1e-3),
    "straggler_share": _SHARE,
    "straggler_slowdown": _number(1.0),
    "down_mbps": _dist(1e-3),
    "up_mbps": _dist(1e-3),
    "latency_ms": _dist(0.0),
    "dropout": _SHARE,
    "reconnect_s": _dist(1e-3),
    "idle": _SHARE,
    "charging": _SHARE,
    "unmetered": _SHARE,
    "keep_open_s": _number(0.0),
    "rounds": _number(1, 10_000_000, integer=True),
    "start_hour_utc": _number(0.0, 24.0),
    "max_virtual_s": _number(0.0),
}
