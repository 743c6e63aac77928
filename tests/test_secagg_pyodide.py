"""The worker's side of secure aggregation runs in Pyodide (Python 3.14, standard library
only): the worker wheel, unpacked into Pyodide under Node, reproduces every standard-library
entry of schemas/secagg/vectors.json (round context, graphs, Shamir shares, fixed-point
encodings, mod-2^32 arithmetic) and parses every valid message example. The cryptographic
entries are the crypto host's: the browser host reproduces them through WebCrypto."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dandelion.bundle.wheel import build_wheel

ROOT = Path(__file__).resolve().parent.parent
PYODIDE = ROOT / "node_modules" / "pyodide"

SCRIPT = r"""
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [pyodideDir, wheel, vectors, examples] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(pyodideDir + "/pyodide.mjs").href);
const py = await loadPyodide({ indexURL: pyodideDir + "/" });
const site = py.runPython("import site; site.getsitepackages()[0]");
py.unpackArchive(new Uint8Array(readFileSync(wheel)), "wheel", { extractDir: site });
py.globals.set("VECTORS", readFileSync(vectors, "utf8"));
py.globals.set("EXAMPLES", readFileSync(examples, "utf8"));
py.runPython("import sys, json; BEFORE = set(sys.modules)");
const out = py.runPython(`
from dandelion.protocol.secagg import (
    StdlibMod32, decode_sum, encode, neighbourhoods, reconstruct, round_salt, split,
)
from dandelion.protocol.secagg.messages import encode_secagg, parse_secagg
from dandelion.protocol.secagg.client import SecAggClient
from dandelion.protocol.secagg.server import SecAggServer

v = json.loads(VECTORS)
h = bytes.fromhex
loaded = set(sys.modules) - BEFORE  # what importing the worker's modules pulled in
got = {"python": sys.version.split()[0], "forbidden": sorted(
    m for m in ("numpy", "cryptography", "sqlite3", "socket", "asyncio.base_events")
    if m in loaded)}
ctx = v["derivations"]["round_context"]
got["salt"] = round_salt(ctx["task"], ctx["round"], h(ctx["seed"])).hex() == ctx["salt"]
def graph(e):
    g = neighbourhoods(e["n"], e["degree"], h(e["salt"]))
    return {str(i): sorted(g[i]) for i in sorted(g)}
got["graph"] = all(graph(e) == e["neighbours"] for e in v["graph"])
e = v["shamir"][0]
draws = iter(h(r) for r in e["random"])
shares = split(h(e["secret"]), e["threshold"], [int(x) for x in e["shares"]], lambda n: next(draws))
got["shamir"] = {str(x): s.hex() for x, s in shares.items()} == e["shares"]
got["rebuild"] = reconstruct(shares, e["threshold"]).hex() == e["secret"]
e = v["fixed_point"][0]
raw = encode(e["values"], e["clip_norm"], e["scale_bits"])
got["fixed_point"] = raw.hex() == e["encoded"]
acc = bytearray(raw)
StdlibMod32().add_into(acc, raw)
StdlibMod32().sub_into(acc, raw)
got["mod32"] = bytes(acc) == raw and decode_sum(raw, e["scale_bits"])[1] == 1.0
got["messages"] = all(
    json.loads(encode_secagg(parse_secagg(m))) == m for m in json.loads(EXAMPLES)
)
json.dumps(got)
`);
console.log(out);
"""


@pytest.fixture(scope="module")
def pyodide_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/test, which installs it with apt")
    if not (PYODIDE / "pyodide.mjs").exists():
        pytest.fail("the npm package pyodide is missing: run scripts/test (npm ci)")
    folder = tmp_path_factory.mktemp("secagg-pyodide")
    wheel = build_wheel(folder).path
    examples = [
        json.loads(p.read_text())
        for p in sorted((ROOT / "schemas" / "secagg" / "examples" / "valid").glob("*.json"))
    ]
    (folder / "examples.json").write_text(json.dumps(examples))
    (folder / "run.mjs").write_text(SCRIPT)
    ran = subprocess.run(
        [
            node,
            str(folder / "run.mjs"),
            str(PYODIDE.resolve()),
            str(wheel),
            str(ROOT / "schemas" / "secagg" / "vectors.json"),
            str(folder / "examples.json"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ran.returncode == 0, ran.stderr
    return dict(json.loads(ran.stdout.strip().splitlines()[-1]))


def test_the_worker_code_runs_on_pyodide_s_python_without_forbidden_modules(
    pyodide_result: dict[str, Any],
) -> None:
    assert pyodide_result["python"].startswith("3.14")
    assert pyodide_result["forbidden"] == []


@pytest.mark.parametrize(
    "entry", ["salt", "graph", "shamir", "rebuild", "fixed_point", "mod32", "messages"]
)
def test_pyodide_reproduces_the_standard_library_vectors(
    pyodide_result: dict[str, Any], entry: str
) -> None:
    assert pyodide_result[entry] is True
