"""The metrics file: schema 2 read back as the probes produced it, schema 1 still read, the index, following a
growing file, streams, and a clear one-line error for every bad file."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from vgtui.core.metrics import MetricsFileError, MetricsIndex, iter_lines_records, iter_records, read_metrics
from vgtui.core.records import (SCHEMA_VERSION, EndRecord, EpochRecord, EventRecord, Hist, LayerStats, RecordEncoder,
                                RunRecord, SetActivation, Snapshot, record_from_json, to_json)
from vgtui.core.writer import MetricsWriter

FIXTURES = ROOT / "tests" / "ui" / "fixtures"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, digits):
    """A real run (switching to tanh at step 5), as the probes produced it and as written by MetricsWriter and by
    RecordEncoder (the compact form: snapshots without the header's edges)."""
    from vgtui.core.config import RunConfig
    from vgtui.engine.trainer import Trainer

    cfg = RunConfig(dataset="mnist-5k", depth=3, width=64, epochs=1, max_steps=12, probe_every=1, device="cpu")
    tmp = tmp_path_factory.mktemp("format")
    recs: list = []
    enc, compact = RecordEncoder(), tmp / "compact.jsonl"
    with MetricsWriter(tmp / "writer.jsonl") as w, open(compact, "w") as f:
        def switch(t):
            if t.step == 5:
                t.send(SetActivation("tanh"))

        def data_only(sink):  # progress ticks depend on the wall clock: this test is about the data records
            return lambda r: None if r.type == "progress" else sink(r)

        sinks = [recs.append, w, lambda r: f.write(enc.line(r))]
        Trainer(cfg, [data_only(s) for s in sinks], data=digits, on_step=switch).run()
    return recs, tmp / "writer.jsonl", compact


def same32(a, b):
    """Equal as float32 (the probes' precision), non-finite values included."""
    if a is None or b is None:
        return a is None and b is None
    return (math.isnan(a) and math.isnan(b)) or np.float32(a) == np.float32(b)


def same_hist(a: Hist | None, b: Hist | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (np.array_equal(a.edges, b.edges) and np.array_equal(a.counts, b.counts)
            and (a.under, a.over, a.zeros) == (b.under, b.over, b.zeros))


def assert_same_run(produced: list, read) -> None:
    header, snaps = produced[0], [r for r in produced if isinstance(r, Snapshot)]
    assert isinstance(read.header, RunRecord) and read.header.schema == SCHEMA_VERSION
    for k in ("device", "version", "config", "source", "model", "dataset", "device_name", "steps_per_epoch",
              "total_steps", "train_size", "test_size", "probe_every", "notice", "started", "pid"):
        assert getattr(read.header, k) == getattr(header, k), k
    assert [(l.name, l.kind, l.activation) for l in read.header.layers] == \
           [(l.name, l.kind, l.activation) for l in header.layers]
    assert np.array_equal(read.header.grad_edges, header.grad_edges)
    assert read.header.act_edges.keys() == header.act_edges.keys()
    assert all(np.array_equal(read.header.act_edges[k], v) for k, v in header.act_edges.items())
    assert len(read.snapshots) == len(snaps) == 12
    for p, r in zip(snaps, read.snapshots):
        assert (r.step, r.epoch, r.elapsed_s, r.steps_per_s, r.activation) == \
               (p.step, p.epoch, p.elapsed_s, p.steps_per_s, p.activation)  # host float64: exact
        assert same32(r.loss, p.loss) and same32(r.loss_avg, p.loss_avg)
        assert len(r.layers) == len(p.layers) == 4
        for lp, lr in zip(p.layers, r.layers):
            assert (lr.name, lr.activation) == (lp.name, lp.activation)
            for k in LayerStats._FLOATS:
                assert same32(getattr(lr, k), getattr(lp, k)), (p.step, lp.name, k)
            assert same_hist(lr.grad_hist, lp.grad_hist) and same_hist(lr.act_hist, lp.act_hist), (p.step, lp.name)
    assert [(e.epoch, e.step, e.train_loss, e.test_acc) for e in read.epochs] == \
           [(e.epoch, e.step, e.train_loss, e.test_acc) for e in produced if isinstance(e, EpochRecord)]
    assert [(e.step, e.set) for e in read.events] == [(e.step, e.set) for e in produced if isinstance(e, EventRecord)]
    assert (read.end.status, read.end.steps) == (produced[-1].status, produced[-1].steps) == ("completed", 12)


@pytest.mark.parametrize("which", ["writer", "compact"])
def test_a_run_reads_back_as_the_probes_produced_it(recorded, which):
    produced, writer_file, compact_file = recorded
    (run,) = read_metrics(writer_file if which == "writer" else compact_file)
    assert_same_run(produced, run)
    assert {s.activation for s in run.snapshots} == {"sigmoid", "tanh"}  # both activations' edges re-attached
    tanh = next(s for s in run.snapshots if s.activation == "tanh")
    assert tanh.layers[0].act_hist.edges[0] == -1.0 and len(tanh.layers[0].act_hist.counts) == 40


def test_compact_snapshots_carry_no_edges_and_float32_digits(recorded):
    produced, writer_file, compact_file = recorded
    lines = compact_file.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["schema"] == SCHEMA_VERSION == 3 and len(head["grad_edges"]) == 55 and set(head["act_edges"]) >= {"sigmoid", "tanh"}
    assert head["layers"][0] == {"name": "fc1", "kind": "Linear", "activation": "sigmoid"}
    snaps = [json.loads(l) for l in lines if l.startswith('{"type":"snapshot"')]
    assert len(snaps) == 12 and not any("edges" in l.get("grad_hist", {}) or "edges" in l.get("act_hist", {})
                                        for s in snaps for l in s["layers"])
    # probe values are float32: at most 9 significant digits, e.g. 0.00017812075, never 17
    v = snaps[0]["layers"][0]["grad_norm"]
    assert len(repr(v).replace("e-", "").lstrip("0.")) <= 9 and np.float32(v) == np.float32(produced[1].layers[0].grad_norm)


def test_float32_shortest_form_is_lossless():
    """A float32 value is written short; any other float in full, so nothing is ever rounded."""
    h = Hist(np.array([0.0, 1.0]), np.array([1]))
    f32, f64 = float(np.float32(0.1)), 0.1  # 0.10000000149011612 is a float32; 0.1 is not
    layer = LayerStats(name="l", grad_norm=f32, grad_mean_abs=f64, weight_norm=1e-45, grad_data_ratio=3e38,
                       update_data_ratio=0.0, out_grad_norm=math.nan, grad_hist=h)
    d = layer.to_json()
    assert d["grad_norm"] == 0.1 and d["grad_mean_abs"] == 0.1 and d["out_grad_norm"] == "nan"
    back = LayerStats.from_json(json.loads(json.dumps(d)))
    assert np.float32(back.grad_norm) == np.float32(f32) and back.grad_mean_abs == f64
    assert back.weight_norm == float(np.float32(1e-45)) or np.float32(back.weight_norm) == np.float32(1e-45)
    assert np.float32(back.grad_data_ratio) == np.float32(3e38)


def test_hist_with_its_own_edges_keeps_them_and_trims_zero_counts():
    header = RunRecord(layers=("a",), device="cpu", version="x", grad_edges=np.linspace(0, 1, 5))
    own = Hist(np.array([0.0, 2.0, 3.0]), np.array([0, 4]), zeros=1)  # not the header's edges
    known = Hist(np.linspace(0, 1, 5), np.array([0, 0, 7, 0]), under=2)
    empty = Hist(np.linspace(0, 1, 5), np.zeros(4, dtype=np.int64), over=9)
    for h in (own, empty, known):
        layer = LayerStats("a", 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, grad_hist=h)
        snap = Snapshot(1, 0, 0.5, 1.0, 1.0, 0.0, "relu", (layer,))
        d = json.loads(json.dumps(to_json(snap, header)))
        back = record_from_json(d, header).layers[0].grad_hist
        assert same_hist(back, h)
    assert "edges" not in to_json(snap, header)["layers"][0]["grad_hist"]
    assert to_json(snap, header)["layers"][0]["grad_hist"] == {"first": 2, "counts": [7], "under": 2, "zeros": 0}  # zeros: always
    with pytest.raises(ValueError, match="without edges"):
        record_from_json(d)  # no header to take them from


def test_schema1_files_still_open():
    for name in ("sigmoid.jsonl", "relu-diverged.jsonl"):
        index = MetricsIndex(FIXTURES / name)
        (run,) = index.runs
        assert run.header.schema == 1 and run.header.grad_edges is None and run.header.layers[0].kind == "Linear"
        snap = run.snapshot(-1)
        assert len(snap.layers[0].grad_hist.edges) == 55 and len(snap.layers[0].grad_hist.counts) == 54
        assert index.notice is None and list(run.snapshot_steps) == [s.step for s in run.iter_snapshots()]
    (run,) = read_metrics(FIXTURES / "sigmoid.jsonl")
    assert len(run.snapshots) == 12 and run.end.status == "completed" and len(run.epochs) == 3


# ---------------------------------------------------------------------------------------------- the index
def test_index_parses_no_snapshot_until_asked(recorded):
    _, _, compact = recorded
    index = MetricsIndex(compact)
    (run,) = index.runs
    assert run.n_snapshots == 12 and list(run.snapshot_steps) == list(range(1, 13))
    assert run._cache == {} and len(run.epochs) == 1 and run.end.status == "completed"
    assert run.events[0].set == {"activation": "tanh"} and run.snapshot_elapsed[-1] > run.snapshot_elapsed[0] > 0
    last = run.snapshot(-1)
    assert last.step == 12 and run.snapshot(11) is last and list(run._cache) == [11]
    assert [s.step for s in run.iter_snapshots(3, 5)] == [4, 5] and run.index_of_step(7) == 6
    with pytest.raises(IndexError):
        run.snapshot(12)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_refresh_follows_an_appended_file(recorded, tmp_path):
    _, _, compact = recorded
    lines = lines_of(compact)
    path = tmp_path / "grow.jsonl"
    path.write_text("".join(lines[:3]))  # the header and the first two snapshots
    index = MetricsIndex(path)
    assert index.runs[0].n_snapshots == 2 and not index.refresh()
    with open(path, "a") as f:
        f.write(lines[3])
        f.write(lines[4][:100])  # a line being written
        f.flush()
        assert index.refresh() and index.runs[0].n_snapshots == 3
        assert index.notice is None  # a line still being written is waited for, not reported
        assert not index.refresh()
        f.write(lines[4][100:])
        f.flush()
        assert index.refresh() and index.runs[0].n_snapshots == 4 and index.runs[0].snapshot(-1).step == 4
        f.writelines(lines[:3])  # a restart: a new run header and two snapshots
    assert index.refresh() and len(index.runs) == 2 and index.runs[1].n_snapshots == 2
    assert index.runs[0].n_snapshots == 4 and index.runs[0].end is None
    path.write_text(lines[0])  # written over by a new run: indexed again from the start
    assert index.refresh() and len(index.runs) == 1 and index.runs[0].n_snapshots == 0


def test_truncated_last_line_shows_the_usable_part_with_a_notice(recorded, tmp_path):
    _, _, compact = recorded
    lines = lines_of(compact)
    path = tmp_path / "killed.jsonl"
    k = [i for i, l in enumerate(lines) if l.startswith('{"type":"snapshot"')][5]  # the 6th snapshot's line
    assert k == 7  # the header, 5 snapshots, the switch to tanh
    path.write_text("".join(lines[:k]) + lines[k][:500])  # killed mid-write
    index = MetricsIndex(path)
    assert index.runs[0].n_snapshots == 5 and index.runs[0].snapshot(-1).step == 5
    assert index.notice == ("the last line is incomplete (the writer was killed mid-write); showing the 7 whole "
                            "records before it")
    assert len(read_metrics(path)[0].snapshots) == 5
    with pytest.raises(MetricsFileError):
        list(iter_records(path, strict=True))
    whole = tmp_path / "no-newline.jsonl"
    whole.write_text("".join(lines[:k]).rstrip("\n"))  # only the newline missing: the line is whole
    assert MetricsIndex(whole).runs[0].n_snapshots == 5 and MetricsIndex(whole).notice is None


# ---------------------------------------------------------------------------------------------- bad files
def _newer(p: Path) -> None:
    p.write_text(json.dumps({"type": "run", "schema": SCHEMA_VERSION + 1, "version": "9.0", "layers": []}) + "\n")


BAD = {
    "missing": (lambda p: None, "no such file"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "empty": (lambda p: p.write_text(""), "the file is empty"),
    "binary": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10), "a binary file"),
    "not-metrics": (lambda p: p.write_text("hello world\nthis is a text file\n"), "line 1 is not JSON"),
    "not-metrics-json": (lambda p: p.write_text('{"name": "package", "version": "1.0"}\n'),
                         "line 1 is a JSON object without a vgtui record type"),
    "not-metrics-array": (lambda p: p.write_text("[1, 2, 3]\n"), "line 1 is a JSON list"),
    "headless-tail": (lambda p: p.write_text(lines_of(FIXTURES / "sigmoid.jsonl")[3]), "tail -n +1 -f"),
    "newer-schema": (_newer, f"written by vgtui 9.0 with schema {SCHEMA_VERSION + 1}; this vgtui"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_gives_one_clear_line(tmp_path, case):
    make, said = BAD[case]
    path = tmp_path / "run.jsonl"
    make(path)
    for read in (MetricsIndex, read_metrics, lambda p: list(iter_records(p))):
        with pytest.raises(MetricsFileError) as e:
            read(path)
        msg = str(e.value)
        assert msg.startswith(f"{path}: ") and said in msg and "\n" not in msg, msg
        assert e.value.reason == case.split("-json")[0].split("-array")[0].replace("headless-tail", "not-metrics")
    if case == "newer-schema":
        assert msg.endswith(f"reads up to schema {SCHEMA_VERSION}: upgrade vgtui")


def test_damaged_line_in_the_middle_is_skipped_with_a_notice_naming_it(recorded, tmp_path):
    _, _, compact = recorded
    lines = lines_of(compact)
    path = tmp_path / "damaged.jsonl"
    path.write_text("".join(lines[:3]) + '{"type":"epoch","oops"\n' + "".join(lines[3:]))
    index = MetricsIndex(path)
    assert index.runs[0].n_snapshots == len(MetricsIndex(compact).runs[0]) and index.n_damaged == 1
    assert index.notices[0].startswith("line 4: not JSON (") and index.notice.startswith(
        "1 damaged line skipped (first: line 4: not JSON (")


# ---------------------------------------------------------------------------------------------- streams
def test_stream_reads_records_as_they_come(recorded):
    _, _, compact = recorded
    data = compact.read_bytes()
    recs = list(iter_lines_records(io.BytesIO(data), "<stdin>"))
    assert isinstance(recs[0], RunRecord) and isinstance(recs[-1], EndRecord)
    assert sum(isinstance(r, Snapshot) for r in recs) == 12
    text = list(iter_lines_records(io.StringIO(data.decode()), "<stdin>"))
    assert [type(r) for r in text] == [type(r) for r in recs]
    torn = list(iter_lines_records(io.BytesIO(data[:-40]), "<stdin>"))  # the end record torn: left out
    assert len(torn) == len(recs) - 1
    for bad, said in ((b"", "the stream is empty"), (b"GET / HTTP/1.1\r\n", "not JSON"),
                      (b"\x00\x01\x02\n", "a binary file"), (data.split(b"\n", 3)[3], "tail -n +1 -f")):
        with pytest.raises(MetricsFileError, match="^<stdin>: ") as e:
            list(iter_lines_records(io.BytesIO(bad), "<stdin>"))
        assert said in str(e.value)


# ---------------------------------------------------------------------------------------------- the long file
def test_ten_thousand_snapshots_of_the_seeds_network_fit_in_40_mb(tmp_path):
    """scripts/make_long_run.py repeats a real run of the seed's network (the schema-1 fixture: 784-1000x5-10
    sigmoid on mnist-5k) into 10,000 snapshots; written as schema 2 they take at most 40 MB (schema 1: ~127 MB)."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_long_run

    source = make_long_run.read_run(FIXTURES / "sigmoid.jsonl")
    assert source[0].layer_names == ("fc1", "fc2", "fc3", "fc4", "fc5", "fc6")
    records = make_long_run.long_run(source, 10_000)
    enc = RecordEncoder()
    assert sum(len(enc.line(r).encode()) for r in records) <= 40_000_000
    path = tmp_path / "long.jsonl"
    make_long_run.write(records[:301] + records[-1:], path)
    (run,) = MetricsIndex(path).runs
    steps = run.snapshot_steps
    assert sum(isinstance(r, Snapshot) for r in records[:301]) == 240  # and 60 epoch records: one every 4
    assert run.header.schema == SCHEMA_VERSION and run.n_snapshots == 240 and run.end.status == "completed"
    assert steps[0] == 10 and (np.diff(steps) == 10).all()  # the fixture's cadence, continued
    assert (np.diff(run.snapshot_elapsed) > 0).all() and (np.diff(run.snapshot_epochs) >= 0).all()
    assert [e.epoch for e in run.epochs] == list(range(1, 61))
    assert same_hist(run.snapshot(12).layers[2].act_hist, run.snapshot(0).layers[2].act_hist)  # a cycle later
