"""The built-in objectives labelled on the first day, ``next_site`` and ``tab_switch``: labels as
documented on hand-written signals, features in their documented ranges, examples from a few
hours of history, deterministic synthetic signals, and the emulator training each past its
trivial baseline."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from browser_worker.datasets import EPOCH
from dandelion.coordinator import TaskConfig, TaskConfigError, load_task_file
from dandelion.emulation import EmulateOptions, PopulationConfig, emulate
from dandelion.emulation.localdata import LocalData
from dandelion.emulation.plan import make_plan
from dandelion.taskspec import Example, Signals, TabEvent, VisitRecord, parse_signals, registry
from dandelion.taskspec.objectives.next_site import WARMUP, class_of, layout, ranked_hosts
from dandelion.taskspec.objectives.tab_switch import NUM_DENSE
from dandelion.taskspec.signals import TRANSITIONS
from dandelion.taskspec.synthetic import SyntheticConfig, generate_history
from dandelion.taskspec.synthetic_tabs import generate_tabs

ROOT = Path(__file__).resolve().parent.parent
T0 = EPOCH + 9 * 3600.0  # a Monday, 09:00 UTC


def _visit(
    host: str, minute: float, transition: str = "link", tab: int | None = None
) -> VisitRecord:
    return VisitRecord(f"https://{host}/x", "", T0 + minute * 60, transition, tab)


def _ranges(examples: list[Example], width: int) -> None:
    for ex in examples:
        assert len(set(ex.indices)) == len(ex.indices)
        assert all(0 <= i < width for i in ex.indices)
        assert all(-1.0 <= v <= 1.0 for v in ex.values)


# next_site


def test_next_site_labels_each_visit_with_the_next_hosts_rank() -> None:
    hosts = ["a.example", "b.example", "a.example", "c.example", "a.example", "b.example"]
    hosts += ["www.d.example", "a.example", "c.example", "b.example"]
    visits = [_visit(h, 5.0 * n) for n, h in enumerate(hosts)]
    # a: 4 visits, b: 3, c: 2 and d: 1; with top_k = 2, c and d are "other" (class 2).
    assert ranked_hosts(visits, 2) == ["a.example", "b.example"]
    assert ranked_hosts(visits, 8) == ["a.example", "b.example", "c.example", "d.example"]
    plugin = registry.objective("next_site")
    features = plugin.configure({"top_k": 2})
    assert plugin.outputs(features) == ["top_1", "top_2", "other"]
    made = plugin.examples(Signals(visits=tuple(visits)), features, T0 + 3600)
    ranked = ranked_hosts(visits, 2)
    expected = [class_of(h.removeprefix("www."), ranked, 2) for h in hosts]
    assert [ex.label for ex in made] == expected[WARMUP + 1 :]
    # The current host's class sits in its one-hot block: visit WARMUP is c.example, "other".
    assert layout(2)["current"] + 2 in made[0].indices
    # Ties rank the more recent host first.
    tied = [_visit("x.example", 0), _visit("y.example", 1)]
    assert ranked_hosts(tied, 2) == ["y.example", "x.example"]


def test_next_site_features_are_in_range_and_deterministic() -> None:
    plugin = registry.objective("next_site")
    features = plugin.configure({"top_k": 4, "num_buckets": 32})
    width = plugin.num_features(features)
    assert width == 5 + 4 * 5 + len(TRANSITIONS) + 32
    signals = plugin.synthetic(3, features, 8.0, EPOCH, {})
    made = plugin.examples(signals, features, EPOCH + 8 * 86400)
    assert len(made) > 50
    _ranges(made, width)
    assert made == plugin.examples(signals, features, EPOCH + 8 * 86400)
    assert {ex.label for ex in made} <= set(range(5))
    # Known values: 30 minutes after the previous visit, a typed visit.
    visits = [_visit("a.example", m) for m in (0, 1, 2, 3)] + [_visit("b.example", 33, "typed")]
    last = plugin.predict_inputs(Signals(visits=tuple(visits)), features, T0 + 3600)
    assert [item for item, _ in last] == ["next"]
    ex = dict(zip(last[0][1].indices, last[0][1].values, strict=True))
    at = layout(4)
    assert ex[4] == pytest.approx(math.log1p(30) / 10)
    assert ex[at["current"] + 1] == 1.0 and ex[at["previous"] + 0] == 1.0
    assert ex[at["transition"] + TRANSITIONS.index("typed")] == 1.0
    assert ex[at["hour"] + 0] == pytest.approx(math.log1p(4) / 3)  # four visits to a.example
    assert ex[0] == pytest.approx(math.sin(2 * math.pi * (9 * 60 + 33) / 1440))


def test_next_site_and_tab_switch_make_examples_on_the_first_day() -> None:
    # Three hours after install: eleven visits, tab events for eight activations.
    visits = [_visit(f"s{n % 3}.example", 15.0 * n, tab=n % 2) for n in range(11)]
    tabs = [TabEvent("activated", n % 3, T0 + 20 * 60 * n, "") for n in range(8)]
    signals = Signals(visits=tuple(visits), tabs=tuple(tabs))
    now = T0 + 3 * 3600
    for name, expected in (("next_site", 11 - WARMUP - 1), ("tab_switch", 7)):
        plugin = registry.objective(name)
        made = plugin.examples(signals, plugin.configure({}), now)
        assert len(made) == expected, name
        assert len(plugin.predict_inputs(signals, plugin.configure({}), now)) == 1


def test_next_site_is_checked_and_sized_as_a_softmax() -> None:
    config = TaskConfig.from_dict({"name": "n", "objective": "next_site"})
    assert config.features == {"top_k": 8, "num_buckets": 0}
    assert (config.model.kind, config.model.num_classes, config.model.num_features) == (
        "softmax",
        9,
        50,
    )
    with pytest.raises(TaskConfigError, match=r"features\.top_k"):
        TaskConfig.from_dict({"name": "n", "objective": "next_site", "features": {"top_k": 0}})
    with pytest.raises(TaskConfigError, match=r"model\.kind: linreg is a regression model"):
        TaskConfig.from_dict({"name": "n", "objective": "next_site", "model": {"kind": "linreg"}})


# tab_switch


def test_tab_switch_targets_are_the_time_to_the_next_activation() -> None:
    raw = {
        "tzOffsetMin": 60,
        "tabs": [
            {"kind": "created", "tabId": 1, "time": 1000 * T0},
            {"kind": "activated", "tabId": 1, "time": 1000 * (T0 + 0.05)},
            {"kind": "updated", "tabId": 1, "time": 1000 * (T0 + 0.5), "url": "https://a.example/"},
            {"kind": "activated", "tabId": 2, "time": 1000 * (T0 + 60)},
            {"kind": "closed", "tabId": 1, "time": 1000 * (T0 + 100)},
            {"kind": "activated", "tabId": 2, "time": 1000 * (T0 + 7260)},
            {"kind": "activated", "tabId": 3, "time": 1000 * (T0 + 7300)},
        ],
        "visits": [
            {"url": "https://a.example/", "visitTime": 1000 * (T0 + 0.5), "transition": "typed",
             "tabId": 1},
        ],
    }  # fmt: skip
    signals = parse_signals(raw)
    plugin = registry.objective("tab_switch")
    features = plugin.configure({"num_buckets": 16})
    assert plugin.outputs(features) == ["log_seconds_to_switch"]
    made = plugin.examples(signals, features, T0 + 8000)
    targets = [ex.target for ex in made]
    # 59.95 s, then 7,200 s capped at an hour, then 40 s; the last activation has no target yet.
    assert targets == pytest.approx([math.log1p(59.95), math.log1p(3600), math.log1p(40)])
    first = dict(zip(made[0].indices, made[0].values, strict=True))
    # Tab 1 gets its URL and its typed visit half a second after its activation.
    assert first[9] == 1.0 and first[10] == 1.0
    assert first[NUM_DENSE + TRANSITIONS.index("typed")] == 1.0
    assert any(i >= NUM_DENSE + len(TRANSITIONS) for i in made[0].indices)
    second = dict(zip(made[1].indices, made[1].values, strict=True))
    assert 10 not in second and 9 not in second  # tab 2: no URL ever
    assert second[4] == pytest.approx(math.log1p(59.95) / math.log1p(3600))
    assert second[6] == pytest.approx(math.log1p(1) / 3)  # one tab created 60 s before
    assert first[0] == pytest.approx(math.sin(2 * math.pi * (10 * 3600 + 0.05) / 86400))
    assert [item for item, _ in plugin.predict_inputs(signals, features, T0 + 8000)] == [
        "current tab"
    ]


def test_tab_switch_features_are_in_range_and_deterministic() -> None:
    plugin = registry.objective("tab_switch")
    features = plugin.configure({})
    width = plugin.num_features(features)
    assert width == NUM_DENSE + len(TRANSITIONS) + 256
    signals = plugin.synthetic(4, features, 8.0, EPOCH, {})
    made = plugin.examples(signals, features, EPOCH + 8 * 86400)
    assert len(made) > 50
    _ranges(made, width)
    assert made == plugin.examples(signals, features, EPOCH + 8 * 86400)
    assert all(0.0 <= ex.target <= math.log1p(3600) for ex in made)
    config = TaskConfig.from_dict({"name": "t", "objective": "tab_switch"})
    assert (config.model.kind, config.model.num_classes) == ("linreg", 1)


def test_predict_scores_the_next_site_and_the_current_tab() -> None:
    from browser_worker.predict import predict

    plugin = registry.objective("tab_switch")
    signals = plugin.synthetic(9, plugin.configure({}), 2.0, EPOCH, {})
    now = EPOCH + 2 * 86400
    for name, width, item in (("next_site", 9, "next"), ("tab_switch", 1, "current tab")):
        config = TaskConfig.from_dict({"name": "p", "objective": name})
        document = {
            "task": "p",
            "version": 3,
            "objective": name,
            "features": config.features,
            "model": config.model.to_dict(),
        }
        params = [0.0] * config.model.param_count
        params[-1] = 2.0  # linreg: the bias; softmax: the "other" class's bias
        out = predict(document, params, signals, now)
        assert out["outputs"] == registry.objective(name).outputs(config.features)
        assert [p["item"] for p in out["predictions"]] == [item]
        scores = out["predictions"][0]["scores"]
        assert len(scores) == width
        if name == "tab_switch":
            assert scores == [2.0]  # log1p seconds: expm1(2.0) = 6.4 s
        else:
            assert sum(scores) == pytest.approx(1.0) and scores.index(max(scores)) == 8


# synthetic signals


def _digest(items: object) -> str:
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def test_synthetic_signals_are_deterministic_per_seed() -> None:
    config = SyntheticConfig()
    one = generate_tabs(7, 3.0, config, EPOCH)
    assert one == generate_tabs(7, 3.0, config, EPOCH)
    assert one != generate_tabs(8, 3.0, config, EPOCH)
    events, visits, _ = one
    assert {e.kind for e in events} == {"created", "activated", "updated", "closed"}
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert all(v.tab_id is not None for v in visits)
    for name in ("next_site", "tab_switch"):
        plugin = registry.objective(name)
        features = plugin.configure({})
        a = plugin.synthetic(5, features, 2.0, EPOCH, {"heterogeneity": 0.5})
        assert a == plugin.synthetic(5, features, 2.0, EPOCH, {"heterogeneity": 0.5})
        assert a != plugin.synthetic(6, features, 2.0, EPOCH, {"heterogeneity": 0.5})


def test_ordered_sessions_are_off_by_default_and_plain_histories_unchanged() -> None:
    # The digest of a plain history as it was before open_with_habit and stay_share existed:
    # revisit_7d's data, and every figure measured on it, must not move.
    assert _digest(generate_history(5, 3.0, SyntheticConfig(), EPOCH)) == "5c3b4fcbe2f8433f"

    def same_site_share(config: SyntheticConfig) -> float:
        same = total = 0
        for user in range(10):
            hosts = [v.url.split("/")[2] for v in generate_history(user, 14.0, config, EPOCH)]
            same += sum(a == b for a, b in itertools.pairwise(hosts))
            total += len(hosts) - 1
        return same / total

    # Sessions may overlap in time and interleave, so the share stays below stay_share.
    assert same_site_share(SyntheticConfig()) < 0.2
    assert same_site_share(SyntheticConfig(stay_share=0.9)) > 0.6


# federated training in the emulator


@pytest.mark.parametrize("name", ["next_site", "tab_switch"])
def test_the_emulators_evaluation_gives_the_workers_figures(name: str, tmp_path: Path) -> None:
    from browser_worker.training import evaluate
    from dandelion.emulation.localdata import TableSource, pack, save_table
    from dandelion.emulation.plan import Evaluator

    config = TaskConfig.from_dict({"name": "e", "objective": name})
    plugin = registry.objective(name)
    made = plugin.examples(plugin.synthetic(2, config.features, 8.0, EPOCH, {}), config.features,
                           EPOCH + 8 * 86400)  # fmt: skip
    rng = np.random.default_rng(0)
    params = rng.normal(0.0, 0.3, config.model.param_count).astype(np.float32)
    loss, accuracy = evaluate(config.model, params.astype(np.float64).tolist(), made)
    evaluator = Evaluator(config.model, pack(made))
    evaluator.CHUNK = 100  # several chunks
    fast_loss, fast_accuracy = evaluator(params)
    assert fast_loss == pytest.approx(loss, rel=1e-9)
    if name == "tab_switch":
        assert fast_accuracy is None and accuracy == 0.0
    else:
        assert fast_accuracy == pytest.approx(accuracy, rel=1e-12)
    # A table file keeps what the evaluation needs, a regression's targets too.
    nf = config.model.num_features
    save_table(tmp_path / "t.npz", [pack(made[:50]), pack(made[50:])], pack(made), nf)
    table = TableSource(tmp_path / "t.npz")
    assert list(table.local(1)) == made[50:] and list(table.test_set()) == made


def _emulated(task_file: str) -> tuple[list[tuple[float | None, float | None]], LocalData]:
    """Three rounds of 20 reports from 60 emulated browsers, and the held-out users' data."""
    task = load_task_file(ROOT / "examples" / task_file).to_dict()
    task["rounds"] = {**task["rounds"], "goal": 20, "min_reports": 16}
    config = PopulationConfig(
        size=60, rounds=3, history_days=8.0, test_users=20, availability="always", dropout=0.0
    )
    result = emulate(config, EmulateOptions(progress=False), task=task)
    test = make_plan(config, task=task).source.test_set()
    return [(r.accuracy, r.loss) for r in result.completed], test


def test_the_emulator_trains_next_site_past_the_majority_class() -> None:
    rounds, test = _emulated("next-site.toml")
    assert len(rounds) == 3
    labels = test.labels.tolist()
    majority = Counter(labels).most_common(1)[0][1] / len(labels)
    accuracy = [a for a, _ in rounds]
    assert accuracy[-1] is not None and accuracy[-1] > majority + 0.05, (accuracy, majority)
    assert rounds[-1][1] is not None and rounds[0][1] is not None
    assert rounds[-1][1] < rounds[0][1]


def test_the_emulator_trains_tab_switch_past_the_mean_predictor() -> None:
    rounds, test = _emulated("tab-switch.toml")
    assert len(rounds) == 3
    assert all(a is None for a, _ in rounds)  # a regression has no accuracy
    assert test.targets is not None
    targets = test.targets
    mean_predictor = 0.5 * float(np.mean((targets - targets.mean()) ** 2))
    final, first = rounds[-1][1], rounds[0][1]
    assert final is not None and first is not None
    assert final < 0.95 * mean_predictor, (rounds, mean_predictor)
    assert final < first
