"""A model version as a safetensors file: one tensor ``params`` (float32, [param_count]), the
flat parameters in the layout the spec's kind defines, and :meth:`.Release.metadata` in the
header (task, version, objective, features, spec, outputs, dandelion version), every value a
string as the format requires.

The same release gives the same bytes: the library writes the header's keys in no fixed order,
so the header is written again with sorted keys (and padded, as the library pads it, to a
multiple of 8 bytes).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from .release import Release

__all__ = ["read_safetensors", "safetensors_bytes"]


def safetensors_bytes(release: Release, extra: Mapping[str, str] | None = None) -> bytes:
    """The file's bytes; ``extra`` adds string metadata beside the release's own (its keys
    must not be the release's)."""
    import numpy as np
    from safetensors.numpy import save

    metadata = release.metadata()
    clash = sorted(set(metadata) & set(extra or {}))
    if clash:
        raise ValueError(f"extra metadata may not replace {clash}")
    params = np.frombuffer(release.params, dtype="<f4").copy()
    data: bytes = save({"params": params}, metadata={**metadata, **(extra or {})})
    return _sorted_header(data)


def _sorted_header(data: bytes) -> bytes:
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def read_safetensors(data: bytes) -> tuple[Any, dict[str, str]]:
    """The ``params`` array and the metadata of a file :func:`safetensors_bytes` made."""
    from safetensors.numpy import load

    # The header is 8 bytes of little-endian length, then JSON; its __metadata__ holds ours.
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    return load(data)["params"], dict(header.get("__metadata__", {}))
