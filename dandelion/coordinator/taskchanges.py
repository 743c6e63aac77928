"""A task's life after it is created: new config versions (edits) and status changes.

Rules of this file: it decides what may change and records it, in the caller's transaction;
the admin API (through the coordinator) and the CLI (straight against the state file) call the
same two functions, :func:`edit_task` and :func:`change_status`. It never touches a running
round: the coordinator takes a new config version up once the task's open round has ended
(``registry.py``), and a status is read by selection and by ``TaskRuntime.wants_round``.

What an edit may change is decided on the two configs in their ``TaskConfig.to_dict`` form:

- never ``name``, ``objective``, ``model``, ``features`` or ``init_seed``: what the model is and
  what its inputs mean. A task with another model is another task;
- ``server.optimizer`` only to one that can take up the optimizer state stored with the latest
  model version (from or to the stateless ``fedavg``, say);
- ``[privacy]``, once the task has released a private round (it has ledger entries), only when
  explicitly allowed: every released round stays charged at its own (q, z), and ε is composed
  again over all of them under the new table. Never, even so, the mechanism, nor a DP-FTRL
  task's noise multiplier, tree (``min_separation``) or clip norm — its tree noise ties each
  release to the ones before — and never ``[privacy]`` added to a task that released model
  versions without it (those carry no guarantee);
- ``[evaluation]``, once the task has trained (a model version past 0), never added and its
  ``holdout`` never raised: the examples that would be held out then were trained on before,
  and an evaluation on them would not be one on unseen data. Lowering ``holdout`` or removing
  the table is allowed (what stays held out was never trained on); the rest of the table
  (its round plan, bounds and noise, charged at their own z) freely;
- anything else — the round plan, deadlines, hyper-parameters, eligibility, the update dtype —
  freely.

A task's status, as a table: ``TRANSITIONS[action, status now]`` is the status after. Asking
for the status a task has already changes nothing and logs nothing; any other pair is refused.
An archived task stays archived: there is no unarchive.

Raises :class:`TaskChangeError` (a ValueError naming the field or the status) for a refused
change, KeyError for a task that does not exist.
"""

from __future__ import annotations

from typing import Any

from ..aggregation.optimizers import decode_state, make_optimizer
from ..storage import StateStore
from .taskconfig import TaskConfig

__all__ = ["ACTIONS", "TRANSITIONS", "TaskChangeError", "change_status", "check_edit", "edit_task"]

ACTIONS = ("pause", "resume", "archive")
TRANSITIONS: dict[tuple[str, str], str] = {
    ("pause", "active"): "paused",
    ("pause", "budget_exhausted"): "paused",
    ("resume", "paused"): "active",
    # The budget check before the next round decides again: a task whose (edited) budget still
    # does not allow a round is budget_exhausted again at once, and spends nothing.
    ("resume", "budget_exhausted"): "active",
    ("archive", "active"): "archived",
    ("archive", "paused"): "archived",
    ("archive", "budget_exhausted"): "archived",
}
_AFTER = {"pause": "paused", "resume": "active", "archive": "archived"}
_NEW_TASK = "create a new task"
#: Why a status leaves no way out, for the refusal.
_STUCK = {"archived": f"an archived task stays archived, there is no unarchive; {_NEW_TASK}"}
#: What an edit never changes: the model and the meaning of its inputs and labels.
_FIXED = ("name", "objective", "model", "features", "init_seed")
#: What ties a DP-FTRL task's releases together: its tree noise is z x C on a tree of this size.
_FTRL_FIXED = ("noise_multiplier", "min_separation")


class TaskChangeError(ValueError):
    """A refused change of a task; ``field`` is the config field (or "status") at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def change_status(store: StateStore, name: str, action: str, now: float, reason: str = "") -> str:
    """Apply ``action`` (pause, resume, archive) to the task; return its status after.
    Raises KeyError, TaskChangeError."""
    if action not in ACTIONS:
        raise TaskChangeError("action", f"{action!r} is none of {', '.join(ACTIONS)}")
    with store.transaction():
        record = store.get_task(name)
        if record is None:
            raise KeyError(name)
        if record.status == _AFTER[action]:
            return record.status
        after = TRANSITIONS.get((action, record.status))
        if after is None:
            hint = _STUCK.get(record.status)
            raise TaskChangeError(
                "status",
                f"task {name!r} is {record.status}: it cannot {action}"
                + (f" ({hint})" if hint else ""),
            )
        store.set_task_status(name, after, reason, at=now)
    return after


def edit_task(
    store: StateStore,
    name: str,
    config: TaskConfig,
    now: float,
    *,
    reason: str = "",
    allow_privacy_change: bool = False,
) -> int:
    """Make ``config`` the task's next config version; return its version (the current one
    when nothing changed: nothing is recorded then). Raises KeyError, TaskChangeError."""
    with store.transaction():
        record = store.get_task(name)
        if record is None:
            raise KeyError(name)
        if record.status == "archived":
            raise TaskChangeError("status", f"task {name!r} is archived: it cannot be edited")
        if config.name != name:
            raise TaskChangeError(
                "name", f"the file says {config.name!r}, the task is {name!r}; a name never changes"
            )
        old = TaskConfig.from_dict(record.config).to_dict()  # both in today's form
        new = config.to_dict()
        if new == old:
            return record.config_version
        latest = store.latest_model_version(name)
        check_edit(
            old,
            new,
            released=len(store.list_ledger(name)),
            model_version=latest.version if latest is not None else 0,
            optimizer_state=latest.optimizer_state if latest is not None else b"",
            allow_privacy_change=allow_privacy_change,
        )
        return store.set_task_config(name, new, at=now, reason=reason)


def check_edit(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    released: int,
    model_version: int,
    optimizer_state: bytes,
    allow_privacy_change: bool,
) -> None:
    """Refuse the first change from ``old`` to ``new`` that cannot apply to the task as it
    stands: ``released`` private rounds, at ``model_version`` with ``optimizer_state``.
    Raises TaskChangeError."""
    for key in _FIXED:
        field = _first_difference(key, old.get(key), new.get(key))
        if field is not None:
            raise TaskChangeError(
                field,
                f"{_shown(old, field)} -> {_shown(new, field)} cannot apply to the existing "
                f"model; {_NEW_TASK}",
            )
    _check_optimizer(old["server"], new["server"], model_version, optimizer_state)
    _check_privacy(old, new, released, model_version, allow_privacy_change)
    _check_evaluation(old.get("evaluation"), new.get("evaluation"), model_version)


def _check_optimizer(
    old: dict[str, Any], new: dict[str, Any], model_version: int, state: bytes
) -> None:
    if old["optimizer"] == new["optimizer"] or not state:
        return
    params = {
        k: v
        for k, v in new.items()
        if k not in ("optimizer", "weighting", "max_examples", "clip_norm")
    }
    try:
        make_optimizer(new["optimizer"], **params).load_state(decode_state(state))
    except ValueError:
        raise TaskChangeError(
            "server.optimizer",
            f"{old['optimizer']} -> {new['optimizer']} cannot take up the optimizer state of "
            f"model version {model_version}; {_NEW_TASK}",
        ) from None


def _check_privacy(
    old: dict[str, Any], new: dict[str, Any], released: int, model_version: int, allow: bool
) -> None:
    before, after = old.get("privacy"), new.get("privacy")
    if before is None and after is not None and model_version > 0:
        raise TaskChangeError(
            "privacy",
            f"cannot be added to a task that released {model_version} model version(s) without "
            f"it (they carry no guarantee); {_NEW_TASK}",
        )
    if before is None or released == 0:
        return
    if after is not None and before["mechanism"] == "dp_ftrl":
        for key in ("mechanism", *_FTRL_FIXED):
            if before.get(key) != after.get(key):
                _never(f"privacy.{key}", before.get(key), after.get(key), released)
        if _clip(old) != _clip(new):
            field = (
                "server.clip_norm"
                if old["server"]["clip_norm"] or new["server"]["clip_norm"]
                else "hyper.clip_norm"
            )
            _never(field, _clip(old), _clip(new), released)
    elif after is not None and before["mechanism"] != after["mechanism"]:
        _never("privacy.mechanism", before["mechanism"], after["mechanism"], released)
    if allow:
        return
    if after is None:
        raise TaskChangeError(
            "privacy",
            f"removing it from a task that released {released} private round(s) must be "
            "allowed explicitly (--allow-privacy-change; API: allow_privacy_change=true)",
        )
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            raise TaskChangeError(
                f"privacy.{key}",
                f"{before.get(key)} -> {after.get(key)} on a task that released {released} "
                "private round(s) must be allowed explicitly (--allow-privacy-change; API: "
                "allow_privacy_change=true); ε is then composed again over every released round",
            )


def _check_evaluation(
    before: dict[str, Any] | None, after: dict[str, Any] | None, model_version: int
) -> None:
    if after is None or model_version == 0:
        return
    why = (
        f"the task has trained {model_version} model version(s): examples held out now were "
        "trained on before, and would be evaluated on"
    )
    if before is None:
        raise TaskChangeError("evaluation", f"cannot be added: {why}; {_NEW_TASK}")
    if after["holdout"] > before["holdout"]:
        raise TaskChangeError(
            "evaluation.holdout",
            f"{before['holdout']} -> {after['holdout']} cannot be raised: {why} (lowering it "
            f"is allowed); {_NEW_TASK}",
        )


def _never(field: str, before: Any, after: Any, released: int) -> None:
    why = (
        "its released rounds cannot be accounted under another mechanism"
        if field == "privacy.mechanism"
        else "a DP-FTRL task's tree noise ties each released round to the ones before"
    )
    raise TaskChangeError(
        field, f"{before} -> {after} after {released} released round(s): {why}; {_NEW_TASK}"
    )


def _clip(config: dict[str, Any]) -> float:
    return float(config["server"]["clip_norm"] or config["hyper"]["clip_norm"])


def _first_difference(path: str, old: Any, new: Any) -> str | None:
    """The dotted path of the first key where ``old`` and ``new`` differ (None if equal)."""
    if old == new:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(f"{path}.{key}", old.get(key), new.get(key))
            if found is not None:
                return found
    return path


def _shown(config: dict[str, Any], field: str) -> str:
    value: Any = config
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return repr(value)
