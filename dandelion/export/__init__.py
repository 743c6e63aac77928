"""Model versions given out: the public model document, ONNX and safetensors files.

Light on purpose: numpy, onnx and safetensors are imported by the functions that need them,
so the admin API can build the public document without loading them.
"""

from __future__ import annotations

from .onnx_export import IR_VERSION, OPSET, dense_inputs, onnx_bytes
from .release import DTYPE, ExportError, Release, public_document, read_release
from .safetensors_export import read_safetensors, safetensors_bytes

__all__ = [
    "DTYPE",
    "IR_VERSION",
    "OPSET",
    "ExportError",
    "Release",
    "dense_inputs",
    "onnx_bytes",
    "public_document",
    "read_release",
    "read_safetensors",
    "safetensors_bytes",
]
