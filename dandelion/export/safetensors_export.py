"""A model version as a safetensors file: one tensor ``params`` (float32, [param_count]), the
flat parameters in the layout the spec's kind defines, and :meth:`.Release.metadata` in the
header (task, version, objective, features, spec, outputs, dandelion version), every value a
string as the format requires."""

from __future__ import annotations

from typing import Any

from .release import Release

__all__ = ["read_safetensors", "safetensors_bytes"]


def safetensors_bytes(release: Release) -> bytes:
    import numpy as np
    from safetensors.numpy import save

    params = np.frombuffer(release.params, dtype="<f4").copy()
    data: bytes = save({"params": params}, metadata=release.metadata())
    return data


def read_safetensors(data: bytes) -> tuple[Any, dict[str, str]]:
    """The ``params`` array and the metadata of a file :func:`safetensors_bytes` made."""
    import json
    import struct

    from safetensors.numpy import load

    # The header is 8 bytes of little-endian length, then JSON; its __metadata__ holds ours.
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    return load(data)["params"], dict(header.get("__metadata__", {}))
