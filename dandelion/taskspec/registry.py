"""Objectives and models by name: the built-in ones, registered ones, and references.

A task file names an objective or a model either by a registered name (``"revisit_7d"``,
``"next_site"``) or by reference, ``"package.module:attribute"`` (the attribute is an instance
or a class, instantiated without arguments). A plugin package registers its own under names
when it is imported; the worker imports the packages bundled with it (``dandelion bundle
--with``) through the entry-point group ``dandelion.tasks`` (:func:`load_plugins`).
"""

from __future__ import annotations

import importlib
import re
from typing import Any, TypeVar

from .models.base import Model
from .objective import Objective
from .tables import nearest

__all__ = [
    "ENTRY_POINTS",
    "MODELS",
    "OBJECTIVES",
    "UnknownPlugin",
    "examples_for",
    "load_plugins",
    "model",
    "objective",
    "register_model",
    "register_objective",
]

#: The entry-point group a plugin package declares itself in.
ENTRY_POINTS = "dandelion.tasks"
NAME = re.compile(r"^[a-z0-9_]{1,64}$")
REFERENCE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

OBJECTIVES: dict[str, Objective] = {}
MODELS: dict[str, Model] = {}
_builtins_loaded = False
_plugins_loaded: list[str] | None = None

T = TypeVar("T")


class UnknownPlugin(LookupError):
    """No objective or model of that name or reference here. Its message is one line."""

    def __str__(self) -> str:
        return str(self.args[0])


def _builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from .models.builtin import BUILTIN_MODELS
    from .objectives import BUILTIN_OBJECTIVES

    for name, m in BUILTIN_MODELS.items():
        MODELS.setdefault(name, m)
    for name, o in BUILTIN_OBJECTIVES.items():
        OBJECTIVES.setdefault(name, o)


def _register(table: dict[str, Any], base: type, what: str, name: str, thing: Any) -> Any:
    if not NAME.match(name):
        raise ValueError(f"{what} name {name!r}: use 1-64 of a-z 0-9 _")
    instance = thing() if isinstance(thing, type) else thing
    if not isinstance(instance, base):
        raise TypeError(f"{what} {name!r} must be a {base.__name__}")
    _builtins()
    known = table.get(name)
    if known is not None and type(known) is not type(instance):
        raise ValueError(f"{what} {name!r} is already registered ({type(known).__qualname__})")
    table[name] = instance
    return thing


def register_objective(name: str) -> Any:
    """Class or instance decorator: ``@register_objective("next_site")``."""
    return lambda thing: _register(OBJECTIVES, Objective, "objective", name, thing)


def register_model(name: str) -> Any:
    """Class or instance decorator: ``@register_model("tiny_mlp")``."""
    return lambda thing: _register(MODELS, Model, "model", name, thing)


def _resolve(table: dict[str, Any], base: type, what: str, ref: str) -> Any:
    _builtins()
    found = table.get(ref)
    if found is not None:
        return found
    if NAME.match(ref):
        load_plugins()
        found = table.get(ref)
        if found is not None:
            return found
        names = sorted(name for name in table if NAME.match(name))
        near = nearest(ref, names)
        hint = f"; did you mean {near!r}?" if near else ""
        raise UnknownPlugin(f"{what} {ref!r} is not known here (known: {', '.join(names)}){hint}")
    if not REFERENCE.match(ref):
        raise UnknownPlugin(f"{what} {ref!r}: a registered name or package.module:attribute")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownPlugin(f"{what} {ref!r}: cannot import {module_name} ({exc})") from None
    thing = getattr(module, attr, None)
    if thing is None:
        raise UnknownPlugin(f"{what} {ref!r}: {module_name} has no attribute {attr!r}")
    instance = thing() if isinstance(thing, type) else thing
    if not isinstance(instance, base):
        raise UnknownPlugin(f"{what} {ref!r} is not a {base.__name__}")
    table[ref] = instance
    return instance


def objective(ref: str) -> Objective:
    """The objective a task names. Raises UnknownPlugin."""
    found: Objective = _resolve(OBJECTIVES, Objective, "objective", ref)
    return found


def model(ref: str) -> Model:
    """The model a spec's kind names. Raises UnknownPlugin."""
    found: Model = _resolve(MODELS, Model, "model", ref)
    return found


def examples_for(signals: Any, ref: str, features: Any, now: float) -> list[Any]:
    """The examples objective ``ref`` makes of ``signals`` (a Signals, or a list of visit
    records) with ``features`` configured; [] for an objective not known here (a worker then
    lets the assignment lapse)."""
    from .signals import Signals

    try:
        found = objective(ref)
    except UnknownPlugin:
        return []
    if not isinstance(signals, Signals):
        signals = Signals(visits=tuple(signals))
    return found.examples(signals, found.configure(features), now)


def load_plugins() -> list[str]:
    """Import every package declared in the ``dandelion.tasks`` entry-point group (once) and
    return their names. A package that fails to import is skipped (its names stay unknown)."""
    global _plugins_loaded
    _builtins()  # the built-in ones first (their signal types too), then the packages
    if _plugins_loaded is not None:
        return _plugins_loaded
    from importlib.metadata import entry_points

    loaded: list[str] = []
    for ep in entry_points(group=ENTRY_POINTS):
        try:
            ep.load()
        except Exception:  # a broken plugin must not stop the built-in tasks
            continue
        loaded.append(ep.value)
    _plugins_loaded = loaded
    return loaded


def reset_plugins() -> None:
    """Forget which entry points were loaded (after ``sys.path`` changed)."""
    global _plugins_loaded
    _plugins_loaded = None
