"""Session trace files (``--trace``): CSV and JSON read to the same sessions, the shipped example
and its JSON form meet the schema in docs/, and each kind of bad file is refused naming the
line or record and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from dandelion.cli import main
from dandelion.emulation.trace import FIELDS, Session, TraceError, load_trace

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "trace.schema.json").read_text())
CSV = """# two devices
device,start_s,end_s,down_mbps,up_mbps,latency_ms,examples_per_s
0,0,600,10,2,40,1000
0,600,900,,,,
1,100,200,1.5,0.5,,20

0,1000,1100,3,,,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_and_json_give_the_same_sessions(tmp_path: Path) -> None:
    from_csv = list(load_trace(write(tmp_path, "t.csv", CSV)))
    doc = {
        "sessions": [
            {"device": 1, "start_s": 100, "end_s": 200, "down_mbps": 1.5, "up_mbps": 0.5,
             "examples_per_s": 20},
            {"device": 0, "start_s": 600, "end_s": 900, "latency_ms": None},
            {"device": 0, "start_s": 1000, "end_s": 1100, "down_mbps": 3},
            {"device": 0, "start_s": 0, "end_s": 600, "down_mbps": 10, "up_mbps": 2,
             "latency_ms": 40, "examples_per_s": 1000},
        ]
    }  # fmt: skip
    jsonschema.validate(doc, SCHEMA)
    from_json = list(load_trace(write(tmp_path, "t.json", json.dumps(doc))))
    assert from_csv == from_json  # by device, then start
    assert from_csv[0] == Session(0, 0.0, 600.0, 10.0, 2.0, 40.0, 1000.0)
    assert from_csv[1] == Session(0, 600.0, 900.0)  # empty cells: the population file's


def test_online_stretches_of_touching_sessions(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "t.csv", CSV))
    assert (trace.devices, trace.sessions) == (2, 4)
    assert trace.next_online(0, 300.0) == 300.0
    assert trace.online_until(0, 300.0) == 900.0  # 0-600 and 600-900 touch: one stretch
    assert trace.next_online(0, 900.0) == 1000.0  # end_s is the first offline moment
    assert trace.online_until(0, 950.0) == 950.0  # offline then
    assert trace.next_online(1, 250.0) == math.inf
    assert trace.next_online(7, 0.0) == math.inf  # a device with no session is never online
    assert trace.peak_online() == 2
    session = trace.at(0, 950.0)  # offline: its link as last seen
    assert session is not None and session.start_s == 600.0


def test_the_shipped_trace_and_its_json_form(tmp_path: Path) -> None:
    example = ROOT / "examples" / "trace.csv"
    trace = load_trace(example)
    assert (trace.devices, trace.sessions) == (50, 1180)
    sessions = list(trace)
    # What its header says: devices 40-49 come online only on the second day.
    assert min(s.start_s for s in sessions if s.device >= 40) >= 86400
    assert {s.device for s in sessions} == set(range(50))
    doc = {
        "sessions": [dict(zip([f[0] for f in FIELDS], vars_of(s), strict=True)) for s in sessions]
    }
    jsonschema.validate(doc, SCHEMA)
    again = load_trace(write(tmp_path, "trace.json", json.dumps(doc)))
    assert list(again) == sessions


def vars_of(s: Session) -> list[object]:
    return [getattr(s, name) for name, _, _ in FIELDS]


HEAD = "device,start_s,end_s,down_mbps\n"
BAD_CSV = [
    ("", "empty: a header row and one row per session"),
    ("# only a comment\n", "empty: a header row"),
    ("device,start_s\n0,1\n", "line 1: the header has no column 'end_s'"),
    ("device,start_s,end_s,speed\n", "line 1: column 'speed' is not a trace field"),
    ("device,start_s,end_s,end_s\n", "line 1: a column is named twice"),
    (HEAD, "no sessions: a trace needs at least one"),
    (HEAD + "0,0,10\n", "line 2: 3 cells, the header has 4"),
    (HEAD + "zero,0,10,1\n", "line 2: device: a number, not 'zero'"),
    (HEAD + "1.5,0,10,1\n", "line 2: device: an integer >= 0, not '1.5'"),
    (HEAD + "-1,0,10,1\n", "line 2: device: an integer >= 0"),
    (HEAD + "0,-5,10,1\n", "line 2: start_s: >= 0"),
    (HEAD + "0,10,10,1\n", "line 2: end_s: after start_s (10), not 10"),
    (HEAD + "0,0,nan,1\n", "line 2: end_s: a finite number, not nan"),
    (HEAD + "0,0,10,0\n", "line 2: down_mbps: > 0, not 0"),
    (HEAD + "0,0,10,1\n0,5,20,1\n", "device 0: the session from 5 s starts before the one from"),
    ("device,start_s,end_s,latency_ms\n0,0,10,-1\n", "line 2: latency_ms: >= 0, not -1"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CSV)
def test_a_bad_csv_trace_is_refused_naming_the_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


BAD_JSON = [
    ("[1, 2]", 'a JSON object {"sessions": [...]}'),
    ("{not json", "not JSON"),
    ('{"sessions": [], "devices": 3}', "devices: not a key of a trace (only sessions)"),
    ('{"sessions": []}', "no sessions"),
    ('{"sessions": [3]}', "sessions[0]: an object of session fields"),
    ('{"sessions": [{"device": 0, "start_s": 0}]}', "sessions[0]: end_s is missing"),
    ('{"sessions": [{"device": 0, "start_s": 0, "end_s": 5, "mbps": 1}]}', "mbps is not a"),
    ('{"sessions": [{"device": true, "start_s": 0, "end_s": 5}]}', "device: a finite number"),
    ('{"sessions": [{"device": 0, "start_s": "0", "end_s": 5}]}', "start_s: a number, not the"),
]


@pytest.mark.parametrize(("text", "message"), BAD_JSON)
def test_a_bad_json_trace_is_refused_naming_the_record_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.json", text)
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert message in str(caught.value)
    # The schema in docs/ refuses the same documents (where it can parse them).
    try:
        doc = json.loads(text)
    except ValueError:
        return
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"absent\.csv: No such file"):
        load_trace(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00device")
    with pytest.raises(TraceError, match="not UTF-8 text"):
        load_trace(binary)


def test_dandelion_data_trace_describes_a_trace_or_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "t.csv", CSV)
    assert main(["data", "trace", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["devices"] == 2 and info["sessions"] == 4 and info["peak_online"] == 2
    assert (info["first_s"], info["last_s"]) == (0.0, 1100.0) and len(info["sha256"]) == 64
    assert main(["data", "trace", str(path)]) == 0
    assert "4 sessions of devices 0 .. 1" in capsys.readouterr().out
    bad = write(tmp_path, "bad.csv", HEAD + "0,10,5,1\n")
    assert main(["data", "trace", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"dandelion data trace: {bad}: line 2: end_s: after start_s (10), not 5\n"
    )
    assert main(["emulate", "--trace", str(bad)]) == 2
    assert f"dandelion emulate: {bad}: line 2: end_s" in capsys.readouterr().err
