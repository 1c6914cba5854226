"""The metrics writer under a short write, the first sign of a full disk on Linux: write() takes fewer bytes than
asked. The line is completed when the rest goes in, else cut back to the last whole line; never half a line left.
Without root: a real file-size limit (RLIMIT_FSIZE) in a child process makes the kernel itself write short."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

from conftest import ROOT

from vgtui.core import writer as w
from vgtui.core.records import EndRecord, EventRecord, LayerInfo, RecordEncoder, RunRecord

HEADER = RunRecord(layers=(LayerInfo("fc1"),), device="cpu", version="0")

CHILD = r"""
import json, os, resource, sys
from vgtui.core import writer as w
from vgtui.core.records import EndRecord, EventRecord, LayerInfo, RecordEncoder, RunRecord

path = sys.argv[1]
mw = w.MetricsWriter(path)
mw.write(RunRecord(layers=(LayerInfo("fc1"),), device="cpu", version="0"))
before = open(path, "rb").read()
event = EventRecord(step=1, set={"activation": "tanh"})
line = RecordEncoder().line(event).encode()
room = len(line) // 2  # the limit falls in the middle of the next line: the kernel takes half of it
resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + room, resource.RLIM_INFINITY))
calls = []
real = os.write

def spy(fd, data):  # the real write; only its answers are noted
    try:
        n = real(fd, data)
    except OSError as e:
        calls.append([len(data), e.strerror])
        raise
    calls.append([len(data), n])
    return n

w.os.write = spy
try:
    mw.write(event)
    error = None
except w.MetricsWriteError as e:
    error = e.reason
w.os.write = real
after = open(path, "rb").read()
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # room again
mw.write(EndRecord(status="interrupted", steps=1, elapsed_s=0.1, message="the disk was full", cause="disk-full"))
mw.close()
print(json.dumps({"calls": calls, "error": error, "rolled_back": after == before, "line": len(line),
                  "room": room}))
"""


def records(path) -> list[dict]:
    return [json.loads(line) for line in open(path).read().splitlines()]  # a torn line fails the test


def test_a_short_write_at_a_real_file_size_limit_is_rolled_back(tmp_path):
    m = tmp_path / "m.jsonl"
    r = subprocess.run([sys.executable, "-c", CHILD, str(m)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr  # SIGXFSZ is ignored by Python: an error, not a dead process
    out = json.loads(r.stdout)
    # the kernel wrote half the line (a short write), the writer asked for the rest, the limit refused it
    assert out["calls"][0] == [out["line"], out["room"]]
    assert out["calls"][1] == [out["line"] - out["room"], os.strerror(errno.EFBIG)]
    assert out["error"] == os.strerror(errno.EFBIG)  # the true reason, not a guess
    assert out["rolled_back"]  # back to the last whole line
    assert [x["type"] for x in records(m)] == ["run", "end"]  # then the end record, on a line of its own


def test_a_short_write_whose_rest_goes_in_completes_the_line(tmp_path, monkeypatch):
    """A write that takes part of the line and no error (a signal, a file system that writes in pieces): the
    writer writes the rest, and the line is whole."""
    m = tmp_path / "m.jsonl"
    mw = w.MetricsWriter(m)
    mw.write(HEADER)
    real, answers = os.write, []

    def short_once(fd, data):
        n = real(fd, data[: len(data) // 3] if not answers else data)
        answers.append((len(data), n))
        return n

    monkeypatch.setattr(w.os, "write", short_once)
    mw.write(EventRecord(step=1, set={"activation": "tanh"}))
    monkeypatch.setattr(w.os, "write", real)
    assert len(answers) == 2 and answers[0][1] < answers[0][0] and answers[1][1] == answers[1][0]
    mw.write(EventRecord(step=2, set={"activation": "relu"}))  # no error: the writer goes on
    mw.close()
    assert [(x["type"], x.get("step")) for x in records(m)] == [("run", None), ("event", 1), ("event", 2)]
    assert mw.error is None


def test_a_rollback_the_disk_refuses_still_leaves_the_end_record_on_its_own_line(tmp_path, monkeypatch):
    """Half a line written, and cutting it off fails too (an I/O error): the end record starts on a new line, so
    the torn line is one damaged line for the reader and the end record stays whole."""
    m = tmp_path / "m.jsonl"
    mw = w.MetricsWriter(m)
    mw.write(HEADER)
    real_write = os.write

    def full_disk(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_truncate(fd, length):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(w.os, "write", full_disk)
    monkeypatch.setattr(w.os, "ftruncate", no_truncate)
    try:
        mw.write(EventRecord(step=1, set={"activation": "tanh"}))
    except w.MetricsWriteError as e:
        assert e.reason == os.strerror(errno.ENOSPC)
    else:
        raise AssertionError("the failed write was not said")
    monkeypatch.setattr(w.os, "write", real_write)
    mw.write(EndRecord(status="interrupted", steps=1, elapsed_s=0.1, message="x", cause="disk-full"))
    mw.close()
    text = m.read_text().splitlines()
    assert len(text) == 3
    assert json.loads(text[0])["type"] == "run" and json.loads(text[2])["type"] == "end"
    assert text[1] == RecordEncoder().line(EventRecord(step=1, set={"activation": "tanh"}))[: len(text[1])]
    assert w.last_record_type(m) == "end"
