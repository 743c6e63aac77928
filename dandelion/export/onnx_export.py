"""A model version as an ONNX graph: input ``x`` (float32 [N, F], dense features), output
``scores`` (float32 [N, outputs]) — what the worker's ``predict_proba`` gives for the same
examples, to float32 precision.

The graph comes from the model's own :meth:`~dandelion.taskspec.Model.onnx_nodes` (the
built-in kinds have one; a plugin model may). Opset 17 and IR version 8 (ONNX 1.12): any
onnxruntime from 1.12 on loads the file. The file's ``metadata_props`` hold
:meth:`.Release.metadata` (task, version, objective, features, spec, outputs).

Raises :class:`~.release.ExportError` for a model without an ONNX form, or one whose nodes do
not make a valid graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..taskspec.models import Example
from .release import ExportError, Release

__all__ = ["IR_VERSION", "OPSET", "dense_inputs", "onnx_bytes"]

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17 (onnx.helper.VERSION_TABLE)


def dense_inputs(examples: Sequence[Example], num_features: int) -> Any:
    """The graph's input for sparse ``examples``: a float32 [N, F] array holding each
    example's values at its indices (repeated indices add up, as in the model's sum)."""
    import numpy as np

    x = np.zeros((len(examples), num_features), dtype=np.float64)
    for row, ex in enumerate(examples):
        np.add.at(x[row], np.asarray(ex.indices, dtype=np.intp), ex.values)
    return x.astype(np.float32)


def onnx_bytes(release: Release) -> bytes:
    """The serialized ONNX model of ``release``. Raises ExportError."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    spec = release.spec
    params = np.frombuffer(release.params, dtype="<f4")
    try:
        nodes, initializers = spec.model.onnx_nodes(spec, params, onnx)
    except NotImplementedError:
        raise ExportError(
            f"model {spec.kind!r} has no ONNX form (its Model does not implement onnx_nodes); "
            "export it with --format safetensors"
        ) from None
    outputs = release.outputs
    graph = helper.make_graph(
        list(nodes),
        f"{release.task}_v{release.version}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", spec.num_features])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", len(outputs)])],
        initializer=list(initializers),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="dandelion",
        producer_version=__version__,
        doc_string=f"task {release.task} version {release.version}: scores {outputs}",
    )
    helper.set_model_props(model, release.metadata())
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"model {spec.kind!r}: its onnx_nodes do not make a valid graph: {first}"
        ) from None
    data: bytes = model.SerializeToString()
    return data
