"""Settings: one documented table that the CLI, the environment and the docs all read.

Each setting has a name, a type, a default and a line of help. A value comes from, in rising
order of precedence: the default, the environment variable ``DANDELION_<NAME>`` (upper case), and
the command-line flag ``--<name-with-dashes>``. ``docs/settings.md`` lists them; a test fails when
the two disagree.

Raises :class:`SettingsError` for a value that does not parse as its type or is out of range.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["SETTINGS", "Setting", "Settings", "SettingsError", "load_settings", "settings_table"]


class SettingsError(ValueError):
    """A setting's value is malformed or out of range."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None  # the wire contract's bound, where the value is sent to workers

    @property
    def env(self) -> str:
        return "DANDELION_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1", "Address to listen on."),
    Setting("port", int, 8750, "TCP port of the one HTTP/WebSocket listener.", 0),
    Setting(
        "db",
        str,
        "dandelion.db",
        "Path of the SQLite state file, or a `postgresql://` URL of a database made for "
        "Dandelion (docs/operations.md, PostgreSQL); `serve` creates a missing state only when "
        "given --create or --task.",
    ),
    Setting(
        "cluster",
        str,
        "",
        "A `redis://` URL: this `serve` is one shard of a cluster serving one population with "
        "the others on the same Redis and `postgresql://` db (docs/operations.md, A cluster); "
        "empty: one process.",
    ),
    Setting(
        "leader_lease_s",
        float,
        5.0,
        "A cluster's leader lease of each task, in seconds: another shard takes a dead "
        "leader's rounds over within this long.",
        0.5,
    ),
    Setting(
        "heartbeat_s",
        float,
        20.0,
        "Seconds between WebSocket pings to each worker; a worker that misses a pong for "
        "half this long is disconnected.",
        0.1,
        86_400,
    ),
    Setting(
        "max_message_bytes",
        int,
        16 * 1024 * 1024,
        "Largest WebSocket message accepted from a worker (a larger one closes the connection "
        "with 1009). Must exceed the largest task's update frame.",
        1024,
        2**31 - 1,
    ),
    Setting(
        "max_text_bytes", int, 64 * 1024, "Largest control (text) message; larger: error.", 256
    ),
    Setting(
        "hello_timeout_s", float, 10.0, "Close a connection that sends no hello this long.", 0.1
    ),
    Setting(
        "idle_timeout_s",
        float,
        300.0,
        "Close a connection that holds no assignment and sends nothing for this long.",
        1.0,
    ),
    Setting(
        "max_errors", int, 10, "Protocol errors tolerated on one connection before closing.", 1
    ),
    Setting("tick_s", float, 0.2, "How often round deadlines and task changes are checked.", 0.01),
    Setting(
        "pace_min_s",
        float,
        5.0,
        "Narrowest retry window (seconds) a worker is given, and the wait before a worker "
        "with no work checks in again. Never zero: a window of zero width would bring a "
        "fleet back in lockstep.",
        0.001,
    ),
    Setting(
        "pace_max_s",
        float,
        600.0,
        "Longest retry window a worker is given (pace steering never asks for more).",
        0.0,
    ),
    Setting(
        "target_checkins_per_s",
        float,
        50.0,
        "Check-in rate pace steering aims for when it spreads workers out: with W workers "
        "waiting, their retry windows span about W / rate seconds.",
        0.001,
    ),
    Setting("log_level", str, "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR."),
    Setting(
        "bundle_dir",
        str,
        "worker-bundle",
        "Folder of the worker bundle (`dandelion bundle` writes it; `serve` serves it at "
        "/worker/).",
    ),
    Setting(
        "max_messages_per_s",
        float,
        20.0,
        "Messages one worker connection may send per second (bursts of twice that, at least "
        "10); faster ones are dropped with a rate_limited error.",
        0.1,
    ),
    Setting(
        "max_connections_per_address",
        int,
        256,
        "Open worker connections allowed from one source address (held in memory only, never "
        "stored); one more is refused with HTTP 429.",
        1,
    ),
    Setting(
        "trusted_proxies",
        str,
        "",
        "Comma-separated addresses or networks (e.g. 127.0.0.1,172.28.0.0/24) of reverse "
        "proxies whose X-Forwarded-For names the worker's address for the per-address limit.",
    ),
    Setting(
        "monitor_k",
        int,
        10,
        "Smallest count the dashboard, the admin API and /metrics show: a count below it is "
        'shown as "<k" (see docs/monitoring.md).',
        2,
    ),
    Setting(
        "monitor_bucket_s",
        float,
        60.0,
        "Width of the time buckets of participation figures: no finer timestamp is shown.",
        1.0,
    ),
    Setting(
        "monitor_window_s",
        float,
        3600.0,
        "How far back the dashboard's participation funnel reaches.",
        60.0,
    ),
    Setting(
        "dashboard_refresh_s",
        float,
        2.0,
        "How often the live dashboard's figures are recomputed and pushed to open dashboards.",
        0.1,
    ),
    Setting(
        "handshake_timeout_s",
        float,
        5.0,
        "Close a TCP connection whose first HTTP request has not sent all its headers this "
        "long after it was accepted (slow or stalled clients).",
        0.1,
    ),
    Setting(
        "max_handshakes_per_address",
        int,
        256,
        "TCP connections from one address still sending their first request's headers; one "
        "more is closed at once (trusted_proxies are not counted; held in memory only).",
        1,
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings. Build with :func:`load_settings`; every field is in ``SETTINGS``."""

    host: str = "127.0.0.1"
    port: int = 8750
    db: str = "dandelion.db"
    cluster: str = ""
    leader_lease_s: float = 5.0
    heartbeat_s: float = 20.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_text_bytes: int = 64 * 1024
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    max_errors: int = 10
    tick_s: float = 0.2
    pace_min_s: float = 5.0
    pace_max_s: float = 600.0
    target_checkins_per_s: float = 50.0
    log_level: str = "INFO"
    bundle_dir: str = "worker-bundle"
    max_messages_per_s: float = 20.0
    max_connections_per_address: int = 256
    trusted_proxies: str = ""
    monitor_k: int = 10
    monitor_bucket_s: float = 60.0
    monitor_window_s: float = 3600.0
    dashboard_refresh_s: float = 2.0
    handshake_timeout_s: float = 5.0
    max_handshakes_per_address: int = 256

    def replace(self, **changes: Any) -> Settings:
        return load_settings(environ={}, overrides={**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _convert(setting: Setting, raw: Any) -> Any:
    try:
        value = setting.type(raw)
    except (TypeError, ValueError):
        raise SettingsError(
            f"{setting.name}: {raw!r} is not a valid {setting.type.__name__}"
        ) from None
    if setting.minimum is not None and value < setting.minimum:
        raise SettingsError(f"{setting.name}: {value} is below the minimum {setting.minimum}")
    if setting.maximum is not None and value > setting.maximum:
        raise SettingsError(f"{setting.name}: {value} is above the maximum {setting.maximum:g}")
    return value


def load_settings(
    *, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Resolve settings from defaults, the environment, then ``overrides`` (e.g. CLI flags).

    ``None`` values in ``overrides`` mean "not given". Raises SettingsError for bad values or
    unknown names in ``overrides``.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = setting.default
        if setting.env in env:
            value = _convert(setting, env[setting.env])
        values[setting.name] = value
    for name, raw in (overrides or {}).items():
        if name not in _BY_NAME:
            raise SettingsError(f"unknown setting {name!r}")
        if raw is not None:
            values[name] = _convert(_BY_NAME[name], raw)
    if 2 * values["pace_min_s"] > values["pace_max_s"]:
        raise SettingsError("pace_max_s must be at least twice pace_min_s")
    if values["cluster"] and not str(values["db"]).startswith(("postgresql://", "postgres://")):
        raise SettingsError("cluster: the shards of a cluster share a postgresql:// db")
    if str(values["db"]).startswith(("postgresql://", "postgres://")):
        from .storage.errors import StorageError
        from .storage.location import check_url

        try:
            check_url(values["db"])
        except StorageError as exc:
            raise SettingsError(f"db: {exc}") from None
    return Settings(**values)


def settings_table() -> str:
    """The Markdown table of every setting, as ``docs/settings.md`` holds it."""
    lines = [
        "| setting | flag | environment | default | meaning |",
        "|---|---|---|---|---|",
    ]
    lines.extend(
        f"| `{s.name}` | `{s.flag}` | `{s.env}` | `{s.default}` | {s.help} |" for s in SETTINGS
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates the table in docs/settings.md
    print(settings_table(), end="")
