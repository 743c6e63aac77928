"""The browser's secure-aggregation crypto host reproduces schemas/secagg/vectors.json byte for
byte: WebCrypto (X25519, HKDF-SHA-256, AES-256-GCM, AES-256-CTR) through Pyodide's ``js`` in
real headless Chromium, with the worker wheel the bundle ships — the same file the CPython host
reproduces (tests/test_secagg_vectors.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .harness import PageServer, open_pyodide, pyodide_page, task_toml

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "schemas" / "secagg" / "vectors.json").read_text())
CODE = (Path(__file__).parent / "secagg_in_pyodide.py").read_text()


async def test_webcrypto_in_pyodide_reproduces_the_test_vectors(
    coordinator: Any, browser: Any
) -> None:

    coord = await coordinator(task_toml())
    server = PageServer(pyodide_page(coord.http + "/worker/"), {})
    await server.start()
    try:
        page = await open_pyodide(browser, server)
        literal = json.dumps(json.dumps(VECTORS))  # a JSON string is a Python string literal
        program = f"{CODE}\nimport json\njson.dumps(await run(json.loads({literal})))"
        got = json.loads(await page.evaluate("(code) => window.__run(code)", program))
    finally:
        await server.stop()
    v = VECTORS
    for e, g in zip(v["x25519"], got["x25519"], strict=True):
        assert g == {
            "public": e["public"],
            "peer_public": e["peer_public"],
            "shared": e["shared"],
            "shared_back": e["shared"],
        }, e["source"]
    assert [g["okm"] for g in got["hkdf_sha256"]] == [e["okm"] for e in v["hkdf_sha256"]]
    assert [g["keystream"] for g in got["aes_256_ctr"]] == [
        e["keystream"] for e in v["aes_256_ctr"]
    ]
    for e, g in zip(v["aes_256_gcm"], got["aes_256_gcm"], strict=True):
        assert (g["ciphertext"], g["plaintext"]) == (e["ciphertext"], e["plaintext"]), e["source"]
        assert g["tampered"] == "ciphertext does not authenticate"
    assert got["zero_agreement"].startswith("X25519 agreement failed")
    for e, g in zip(v["shamir"], got["shamir"], strict=True):
        assert g == {"shares": e["shares"], "secret": e["secret"]}
    assert got["fixed_point"] == [e["encoded"] for e in v["fixed_point"]]
    assert got["graph"] == [e["neighbours"] for e in v["graph"]]
    d, g = v["derivations"], got["derivations"]
    assert g["salt"] == d["round_context"]["salt"] == v["salt_of_derivations"]
    assert g["share_key"] == d["share_key"]["key"]
    assert g["share_ciphertext"] == d["share_ciphertext"]["ciphertext"]
    assert g["share_opened"] == [d["share_ciphertext"]["s_share"], d["share_ciphertext"]["b_share"]]
    assert g["pairwise_mask"] == d["pairwise_mask"]["mask"]
    assert (g["self_mask_key"], g["self_mask"]) == (d["self_mask"]["key"], d["self_mask"]["mask"])
    assert g["masked_input"] == {
        "stdlib": d["masked_input"]["masked"],
        "typed_array": d["masked_input"]["masked"],
    }
    assert got["random"] == [70000, 3]  # three different 32-byte windows of one draw
    print("in Pyodide, ms:", json.dumps({k: round(x, 1) for k, x in got["timing_ms"].items()}))
