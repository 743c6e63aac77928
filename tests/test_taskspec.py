"""The task-spec layer: objectives and models by name or reference, their checks, the numpy
paths against the pure ones, and the signal types."""

from __future__ import annotations

import json
import random
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dandelion.coordinator import TaskConfig, TaskConfigError
from dandelion.taskspec import Example, ModelSpec, parse_signals, registry
from dandelion.taskspec.models import init_params, predict_proba

ROOT = Path(__file__).resolve().parent.parent


def _task(**change: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "t",
        "objective": "revisit_7d",
        "features": {"num_buckets": 16},
        "hyper": {"clip_norm": 1.0},
    }
    raw.update(change)
    return raw


def test_an_unknown_objective_is_refused_in_one_line() -> None:
    with pytest.raises(TaskConfigError) as info:
        TaskConfig.from_dict(_task(objective="next_sites"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("objective: objective 'next_sites' is not known here (known: ")
    assert "revisit_7d" in message
    assert message.endswith("; did you mean 'next_site'?")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"objective": "nosuchpkg.tasks:thing"}, "objective: .*cannot import nosuchpkg.tasks"),
        ({"objective": "dandelion.taskspec:nothing"}, "has no attribute 'nothing'"),
        ({"objective": "dandelion.taskspec.registry:MODELS"}, "is not a Objective"),
        ({"model": {"kind": "cnn"}}, "model.kind: model 'cnn' is not known here"),
        ({"model": {"kind": "linreg"}}, "model.kind: linreg is a regression model"),
        ({"model": {"num_features": 7}}, "model.num_features: objective revisit_7d makes 36"),
        ({"model": {"num_classes": 3}}, "model.num_classes: objective revisit_7d has 2 classes"),
        ({"model": {"kind": "softmax", "hidden": 4}}, "model: hidden is for mlp only"),
        ({"model": {"kind": "mlp"}}, "model: mlp needs hidden >= 1"),
        ({"features": {"num_bucket": 16}}, "features.num_bucket: unknown key; did you mean"),
        ({"features": {"num_buckets": "many"}}, "features.num_buckets: an int"),
        ({"model": {"kind": "logreg", "depth": 2}}, "model.depth: unknown key"),
    ],
)
def test_objective_and_model_are_checked_against_each_other(
    change: dict[str, object], fragment: str
) -> None:
    with pytest.raises(TaskConfigError, match=fragment):
        TaskConfig.from_dict(_task(**change))


def test_features_are_completed_and_the_model_sized_by_the_objective() -> None:
    config = TaskConfig.from_dict(_task(features={}))
    assert config.features == {"num_buckets": 1024, "horizon_days": 7.0}
    assert config.model == ModelSpec("logreg", 20 + 1024)
    assert TaskConfig.from_dict(config.to_dict()) == config
    mlp = TaskConfig.from_dict(_task(model={"kind": "mlp", "hidden": 3}))
    assert mlp.model.param_count == 3 * 36 + 3 + 2 * 3 + 2


def test_a_plugin_package_registers_and_is_found_by_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mytasks"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from dandelion.taskspec import Example, Objective, register_objective

            @register_objective("count_visits")
            class CountVisits(Objective):
                defaults = {"cap": 3}

                def num_features(self, features):
                    return 2

                def examples(self, signals, features, now):
                    return [Example((0, 1), (1.0, float(i % 2)), i % 2)
                            for i, _ in enumerate(signals.visits[: features["cap"]])]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        by_ref = TaskConfig.from_dict(_task(objective="mytasks:CountVisits", features={}))
        assert by_ref.model.num_features == 2 and by_ref.features == {"cap": 3}
        by_name = TaskConfig.from_dict(_task(objective="count_visits", features={"cap": 5}))
        assert by_name.features == {"cap": 5}
        signals = parse_signals(
            {"visits": [{"url": f"https://a.example/{i}", "visitTime": 1e12 + i} for i in range(9)]}
        )
        made = registry.examples_for(signals, "count_visits", {"cap": 4}, 2e9)
        assert [ex.label for ex in made] == [0, 1, 0, 1]
    finally:
        registry.OBJECTIVES.pop("count_visits", None)
        registry.OBJECTIVES.pop("mytasks:CountVisits", None)
        sys.modules.pop("mytasks", None)


def _random_examples(rng: random.Random, f: int, n: int, classes: int) -> list[Example]:
    out = []
    for _ in range(n):
        idx = tuple(sorted(rng.sample(range(f), 4)))
        out.append(
            Example(
                idx, tuple(rng.uniform(-1, 1) for _ in idx), rng.randrange(classes), rng.gauss(0, 1)
            )
        )
    return out


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("logreg", 12),
        ModelSpec("softmax", 12, 4),
        ModelSpec("mlp", 12, 3, 5),
        ModelSpec("linreg", 12, 1),
    ],
    ids=lambda s: s.kind,
)
def test_the_numpy_path_gives_the_pure_python_scores(spec: ModelSpec) -> None:
    rng = random.Random(3)
    params = [rng.uniform(-0.5, 0.5) for _ in range(spec.param_count)]
    examples = _random_examples(rng, spec.num_features, 20, max(2, spec.num_classes))
    dense = np.zeros((len(examples), spec.num_features))
    for r, ex in enumerate(examples):
        dense[r, list(ex.indices)] = ex.values
    fast = spec.model.predict_many(spec, np.asarray(params), dense)
    pure = np.array([predict_proba(spec, params, ex) for ex in examples])
    np.testing.assert_allclose(fast, pure, rtol=0, atol=1e-12)
    assert len(init_params(spec, random.Random(0))) == spec.param_count


def test_linreg_learns_a_line() -> None:
    from browser_worker.training import Hyper, train_local

    spec = ModelSpec("linreg", 2, 1)
    rng = random.Random(0)
    examples = [
        Example((0, 1), (x, 1.0), 0, 3.0 * x - 1.0)
        for x in (rng.uniform(-1, 1) for _ in range(200))
    ]
    params = [0.0] * 3
    for _ in range(30):
        result = train_local(spec, params, examples, Hyper(0.2, 1, 8, 100.0), rng)
        params = [p + d for p, d in zip(params, result.clipped_delta, strict=True)]
    assert abs(params[0] - 3.0) + abs(params[1] + params[2] + 1.0) < 0.05


def test_signal_types_parse_and_malformed_items_are_skipped() -> None:
    signals = parse_signals(
        json.dumps(
            {
                "visits": [{"url": "https://a.example/", "visitTime": 2e12, "transition": "typed"}],
                "tabs": [
                    {"kind": "activated", "tabId": 4, "time": 2e12 + 5, "windowId": 1},
                    {"kind": "exploded", "tabId": 4, "time": 2e12},
                    {"kind": "closed", "tabId": True, "time": 2e12},
                ],
                "pageTimes": [
                    {"url": "https://a.example/", "start": 2e12, "ms": 12_500},
                    {"url": "chrome://settings", "start": 2e12, "ms": 3},
                ],
                "bookmarks": [{"url": "https://b.example/", "title": "B", "dateAdded": 1e12}],
                "tzOffsetMin": 60,
                "unknownType": [1, 2],
            }
        )
    )
    assert signals.visits[0].transition == "typed" and signals.visits[0].tz_offset_min == 60
    assert [(t.kind, t.tab_id, t.window_id) for t in signals.tabs] == [("activated", 4, 1)]
    assert signals.page_times[0].seconds == 12.5 and len(signals.page_times) == 1
    assert signals.bookmarks[0].added == 1e9
    assert len(signals) == 4
    with pytest.raises(ValueError, match=r"signals\.tabs must be a list"):
        parse_signals({"tabs": {}})


def test_page_examples_takes_its_width_from_the_model() -> None:
    config = TaskConfig.from_dict(
        {"name": "p", "objective": "page_examples", "model": {"kind": "logreg", "num_features": 5}}
    )
    assert config.features == {"num_features": 5, "num_classes": 2}
    signals = parse_signals(
        {
            "examples": [
                {"indices": [0, 4], "values": [1.0, 0.5], "label": 1},
                {"indices": [5], "label": 0},  # out of range: skipped
                {"indices": [1], "label": 0},
            ],
            "predict": [{"indices": [2], "item": "this page"}],
        }
    )
    made = registry.examples_for(signals, "page_examples", config.features, 0.0)
    assert made == [Example((0, 4), (1.0, 0.5), 1), Example((1,), (1.0,), 0)]
    inputs = registry.objective("page_examples").predict_inputs(signals, config.features, 0.0)
    assert inputs == [("this page", Example((2,), (1.0,), 0))]
