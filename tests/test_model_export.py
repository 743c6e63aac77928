"""``dandelion model export``: the ONNX file of every built-in kind and of a plugin model
(``relu_net``) gives the worker's scores within 1e-5 in onnxruntime; the safetensors file holds
the parameters and the metadata; the command's exit statuses and one-line errors."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors import safe_open

from browser_worker.predict import params_from_weights, predict
from dandelion import __version__
from dandelion.cli import main
from dandelion.coordinator import TaskConfig
from dandelion.export import IR_VERSION, OPSET, dense_inputs, read_safetensors
from dandelion.plugins import use_plugins
from dandelion.storage import ModelVersion, SQLiteStore
from dandelion.tasks_cli import create_task_in
from dandelion.taskspec import Example, Model, ModelSpec, parse_signals, register_objective
from dandelion.taskspec.models import predict_proba
from dandelion.taskspec.models.builtin import LogReg
from dandelion.taskspec.objectives.page_examples import PageExamples
from dandelion.taskspec.registry import register_model

from .conftest import LiveFactory
from .test_public_model import F, fetch_model, page_task, predict_signals, train

ROOT = Path(__file__).resolve().parent.parent
ENGAGEMENT = str(ROOT / "examples" / "engagement" / "engagement")
TOLERANCE = 1e-5


@register_objective("test_page_values")
class PageValues(PageExamples):
    """A regression objective for the tests (none is built in): page examples whose label is
    the target."""

    task: ClassVar[Any] = "regression"
    default_model = "linreg"

    def outputs(self, features: Mapping[str, Any]) -> list[str]:
        return ["value"]


@register_model("test_no_onnx")
class NoOnnx(Model):
    """Logistic regression without an ONNX form."""

    def param_count(self, spec: ModelSpec) -> int:
        return spec.num_features + 1

    def loss_grad(
        self, spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: Any
    ) -> float:
        return LogReg().loss_grad(spec, params, batch, grad)

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        return LogReg().predict(spec, params, ex)


def run_onnx(path: Path, x: Any) -> Any:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert [o.name for o in session.get_outputs()] == ["scores"]
    return session.run(["scores"], {"x": x})[0]


def export(db: str, *args: str) -> tuple[int, str, str]:
    """``dandelion model export ARGS --db DB`` in this process: (status, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["model", "export", *args, "--db", db])
    return status, out.getvalue(), err.getvalue()


KINDS = [
    ("logreg", 2, 0),
    ("softmax", 3, 0),
    ("mlp", 3, 4),
    ("relu_net", 2, 3),  # the example plugin package's model, with its own onnx_nodes
]


@pytest.mark.parametrize(("kind", "classes", "hidden"), KINDS, ids=[k[0] for k in KINDS])
async def test_the_onnx_export_scores_like_predict(
    live: LiveFactory, tmp_path: Path, kind: str, classes: int, hidden: int
) -> None:
    plugin = ["--with", ENGAGEMENT] if kind == "relu_net" else []
    if plugin:
        use_plugins([ENGAGEMENT])  # the coordinator, too, must know the task's model
    server = await live(monitor_k=2)
    await train(server, page_task("t", kind, classes=classes, hidden=hidden))
    document, weights = await fetch_model(server, "t")
    assert document["version"] == 2 and document["model"]["kind"] == kind
    out = tmp_path / f"{kind}.onnx"
    status, stdout, stderr = export(server.settings.db, "t", "--format", "onnx", "--out", str(out))
    assert (status, stderr) == (0, ""), stderr
    assert stdout.startswith(f"exported task t version 2 to {out} (onnx, ")

    signals = predict_signals(40, seed=11)
    spec = ModelSpec.from_dict(document["model"])
    scored = predict(document, params_from_weights(weights, spec), parse_signals(signals), 0.0)
    expected = np.array([p["scores"] for p in scored["predictions"]])
    examples = [Example(tuple(i["indices"]), tuple(i["values"])) for i in signals["predict"]]
    got = run_onnx(out, dense_inputs(examples, F))
    assert got.dtype == np.float32 and got.shape == (40, classes)
    gap = float(np.abs(got - expected).max())
    assert gap < TOLERANCE, gap
    assert float(np.abs(expected[:, 0] - expected[0, 0]).max()) > 1e-3  # the inputs matter

    model = onnx.load(str(out))
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["task"] == "t" and meta["version"] == "2"
    assert meta["objective"] == "page_examples"
    assert json.loads(meta["spec"]) == document["model"]
    assert json.loads(meta["features"]) == document["features"]
    assert json.loads(meta["outputs"]) == document["outputs"]


def _state_with(tmp_path: Path, config: TaskConfig, params: Any = None) -> str:
    """A state file holding ``config``; with ``params``, also a version 1 of them."""
    db = str(tmp_path / "state.db")
    create_task_in(db, config)
    if params is not None:
        store = SQLiteStore(db)
        blob = np.asarray(params, dtype="<f4").tobytes()
        store.save_model_version(ModelVersion(config.name, 1, 1, blob, b"", time.time(), {}))
        store.close()
    return db


def test_linreg_exports_its_value_within_the_tolerance(tmp_path: Path) -> None:
    config = TaskConfig.from_dict(
        {
            "name": "reg",
            "objective": "test_page_values",
            "model": {"kind": "linreg"},
            "features": {"num_features": 8},
        }
    )
    assert config.model.kind == "linreg" and config.model.num_classes == 1
    rng = np.random.default_rng(5)
    params = rng.normal(size=9).astype("<f4")
    db = _state_with(tmp_path, config, params)
    out = tmp_path / "reg.onnx"
    assert export(db, "reg", "--version", "1", "--format", "onnx", "--out", str(out))[0] == 0
    r = random.Random(2)
    examples = [
        Example(tuple(sorted(r.sample(range(8), 4))), tuple(r.uniform(-3, 3) for _ in range(4)))
        for _ in range(64)
    ]
    floats = [float(v) for v in params]
    expected = np.array([predict_proba(config.model, floats, ex) for ex in examples])
    got = run_onnx(out, dense_inputs(examples, 8))
    assert got.shape == (64, 1)
    assert float(np.abs(got - expected).max()) < TOLERANCE
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["outputs"]) == ["value"] and meta["version"] == "1"


def test_dense_inputs_put_values_at_their_indices() -> None:
    x = dense_inputs(
        [Example((0, 3), (2.5, -1.0)), Example((), ()), Example((1, 1), (1.0, 2.0))], 4
    )
    assert x.dtype == np.float32
    assert x.tolist() == [[2.5, 0, 0, -1.0], [0, 0, 0, 0], [0, 3.0, 0, 0]]


def test_safetensors_round_trips_the_parameters_and_the_metadata(tmp_path: Path) -> None:
    config = page_task("pages", "mlp", classes=3, hidden=4)
    params = np.random.default_rng(1).normal(size=config.model.param_count).astype("<f4")
    db = _state_with(tmp_path, config, params)
    out = tmp_path / "pages.safetensors"
    status, stdout, _ = export(db, "pages", "--format", "safetensors", "--out", str(out), "--json")
    assert status == 0
    info = json.loads(stdout)
    assert info["version"] == 1 and info["format"] == "safetensors"  # the latest by default
    assert info["bytes"] == out.stat().st_size
    loaded, meta = read_safetensors(out.read_bytes())
    assert loaded.dtype == np.float32 and loaded.shape == (config.model.param_count,)
    assert loaded.tobytes() == params.tobytes()
    assert meta == {
        "task": "pages",
        "version": "1",
        "round": "1",
        "objective": "page_examples",
        "features": json.dumps({"num_classes": 3, "num_features": F}),
        "spec": json.dumps(config.model.to_dict(), sort_keys=True),
        "outputs": json.dumps(["class_0", "class_1", "class_2"]),
        "dtype": "float32",
        "dandelion_version": __version__,
    }
    with safe_open(str(out), framework="numpy") as f:  # the reference reader agrees
        assert list(f.keys()) == ["params"]
        assert f.metadata() == meta
        assert f.get_tensor("params").tobytes() == params.tobytes()
    # The same version exports as the same bytes (the header's keys in a fixed order).
    again = tmp_path / "again.safetensors"
    assert export(db, "pages", "--format", "safetensors", "--out", str(again))[0] == 0
    assert again.read_bytes() == out.read_bytes()
    # Version 0 is still there, by number.
    zero = tmp_path / "zero.safetensors"
    assert (
        export(db, "pages", "--version", "0", "--format", "safetensors", "--out", str(zero))[0] == 0
    )
    assert read_safetensors(zero.read_bytes())[1]["version"] == "0"


def test_exit_statuses_and_one_line_errors(tmp_path: Path) -> None:
    config = TaskConfig.from_dict(
        {
            "name": "plain",
            "objective": "page_examples",
            "model": {"kind": "test_no_onnx", "num_features": 4},
        }
    )
    db = _state_with(tmp_path, config)
    out = str(tmp_path / "m.onnx")
    cases = [
        (["nope", "--format", "onnx", "--out", out], "no task 'nope' in the state file"),
        (["plain", "--version", "3", "--format", "onnx", "--out", out], "no model version 3"),
        (["plain", "--format", "onnx", "--out", out], "'test_no_onnx' has no ONNX form"),
        (["plain", "--format", "safetensors", "--out", str(tmp_path / "no" / "m")], "--out"),
    ]
    for args, words in cases:
        status, stdout, stderr = export(db, *args)
        assert status == 2, (args, stderr)
        assert stdout == ""
        assert stderr.startswith("dandelion model export: ") and words in stderr, stderr
        assert stderr.count("\n") == 1, stderr  # one line, no traceback
    assert not Path(out).exists()
    # The same model exports as safetensors, which needs no graph.
    status, _, _ = export(db, "plain", "--format", "safetensors", "--out", out)
    assert status == 0
    missing = str(tmp_path / "missing.db")
    status, _, stderr = export(missing, "plain", "--format", "onnx", "--out", out)
    assert status == 2 and "no state file" in stderr
    # A bad --format is argparse's own error (exit 2).
    with pytest.raises(SystemExit) as exc:
        main(["model", "export", "plain", "--format", "pickle", "--out", out, "--db", db])
    assert exc.value.code == 2


def test_a_plugin_model_needs_its_package(tmp_path: Path) -> None:
    use_plugins([ENGAGEMENT])
    config = page_task("eng", "relu_net", hidden=3)
    db = _state_with(tmp_path, config)
    from dandelion.taskspec import registry

    saved = registry.MODELS.pop("relu_net")  # this process as one that never imported it
    try:
        status, _, stderr = export(db, "eng", "--format", "onnx", "--out", str(tmp_path / "e"))
    finally:
        registry.MODELS["relu_net"] = saved
    assert status == 2 and "relu_net" in stderr and "--with" in stderr, stderr
    out = tmp_path / "eng.onnx"
    status, _, stderr = export(
        db, "eng", "--format", "onnx", "--out", str(out), "--with", ENGAGEMENT
    )
    assert status == 0, stderr
    assert run_onnx(out, np.zeros((1, F), np.float32)).shape == (1, 2)
