"""The reader against hostile input: damaged lines, escape sequences, hostile sizes, files truncated or replaced
while followed, and paths that are not regular files. The corpus (tests/hostile_corpus.py) is built from real
recorded runs; every file goes through the index, the stream reader and the real commands."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import tracemalloc
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
import pytest

from hostile_corpus import ESCAPES, FIXTURES, HOSTILE, REFUSED, hostile_files, special_files
from vgtui.cli import main as vgtui_main
from vgtui.core import metrics
from vgtui.core.metrics import MetricsFileError, MetricsIndex, iter_lines_records, iter_records
from vgtui.core.records import NoticeRecord, RunRecord, Snapshot, record_from_json, safe_text
from vgtui.sources.file import FileSource

ROOT = Path(__file__).resolve().parents[1]
# what must never reach a terminal raw: C0 but newline, DEL, C1, bidi controls, lone surrogates
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
UNSAFE_IN_FIELD = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
RAW_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")

# damaged files: where the damage is found (the index skips a line; or a snapshot indexed from its first bytes
# fails when it is parsed) and what its notice says
AT_INDEX = {
    "not_json": (9, "not JSON"), "nul_in_middle": (9, "not JSON"), "nul_in_second_line": (2, "not JSON"), "raw_control_bytes": (9, "not JSON"),
    "deep_nesting": (9, "nested too deeply"), "huge_int_literal": (9, "not JSON"),
    "json_scalars": (9, "a JSON null without a vgtui record type"), "unknown_type": (9, "without a vgtui record type"),
    "step_huge": (9, "step is 1000000000000000000000000000000, outside"), "step_fractional": (9, "step is 10.5"),
    "step_nan": (9, "step is 'nan', not a whole number"), "step_negative": (9, "step is -5, outside"),
    "step_string": (9, "step is 'ten'"), "step_bool": (9, "step is True"), "step_inf_float": (9, "step is inf"),
    "prefix_step_many_digits": (9, "not JSON"), "prefix_step_huge": (9, "outside 0..4611686018427387904"),
    "prefix_elapsed_word": (9, "elapsed_s is 'hello'"), "prefix_elapsed_garbage": (9, "not JSON"),
    "epoch_wrong_types": (9, "an epoch record that cannot be read (epoch is 'one'"),
    "event_set_not_dict": (9, "set is 'activation=relu', not a JSON object"),
    "event_lr_string": (9, "set.lr is 'fast', not a number"), "event_activation_number": (9, "set.activation is 5"),
    "end_wrong_types": (17, "steps is 'all'"), "esc_notice_in_name": (9, "an end record that cannot be read (status"),
    "branch_before_header": (2, "a record of branch B before that branch's run header"),
    "second_header_damaged": (18, "layers is None, not a list"), "second_header_newer_schema": (18, "schema 99"),
    "header_wrong_types": (17, "steps_per_epoch is -1"), "header_config_not_dict": (18, "config is 'sgd'"),
    "header_config_lr_string": (18, "config.lr is 'fast', not a number"),
    "header_edges_bad": (6, "grad_edges: 3 edges, not two or more increasing ones"),
}
AT_PARSE = {
    "invalid_utf8": "not UTF-8", "truncated_middle": "not JSON", "layers_null": "layers is None, not a list",
    "layers_string": "layers is 'fc1', not a list", "layers_empty": "layers is empty", "layer_not_dict": "a layer is 7",
    "layer_name_number": "a layer's name is 12", "hist_counts_too_many": "500 counts for 54 bins",
    "hist_counts_negative": "counts is -5, outside", "hist_counts_overflow": "counts is 1000000000000000000000000000000",
    "hist_counts_float": "counts is 1.5, not a whole number", "hist_edges_bad": "edges is 'nan', not a finite number",
    "hist_edges_short": "1 edges, not two or more", "hist_not_dict": "grad_hist is [1, 2, 3], not a JSON object",
    "hist_under_string": "under is 'many'", "float_string": "grad_norm is 'big', not a number",
    "float_list": "loss is [1.0], not a number", "metric_string": "metric 'acc' is 'high', not a number",
    "metric_nested": "metric 'acc' is {'top1': 1}", "metrics_not_dict": "metrics is [0.5], not a JSON object",
    "unknown_branch": "unknown branch ('Z')", "branch_not_string": "unknown branch (['B'])",
    "schema1_then_compact_lines": "without edges, and none in the run header",
}
# damaged lines after the first: records skipped with the damaged header of their run (up to the next header, or
# the end), and the other JSON scalars
ORPHANS = {"json_scalars": 4, "second_header_damaged": 4, "second_header_newer_schema": 4, "header_wrong_types": 3,
           "header_config_not_dict": 2, "header_config_lr_string": 2, "header_edges_bad": 4, "branch_before_header": 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return hostile_files(tmp_path_factory.mktemp("corpus"))


def strings_in(x, seen=None):
    """Every string a record holds, recursively (dataclass fields, dicts' keys and values, lists, tuples)."""
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from strings_in(v)
    elif is_dataclass(x):
        for f in fields(x):
            yield from strings_in(getattr(x, f.name))


def every_record(index: MetricsIndex):
    for run in index.runs:
        for r in (run, *run.branches):
            yield r.header
            yield from r.epochs
            yield from r.events
            if r.end is not None:
                yield r.end
            for i in range(r.n_snapshots):
                try:
                    yield r.snapshot(i)
                except MetricsFileError:
                    pass


# ---------------------------------------------------------------------------------------------- escape sequences
def test_safe_text_makes_every_terminal_control_visible_and_leaves_text_alone():
    assert safe_text("\x1b]0;PWNED\x07") == "\\x1b]0;PWNED\\x07"
    assert safe_text("a\nb\tc\rd\x00\x7f\x9b\x85") == "a\\x0ab\\x09c\\x0dd\\x00\\x7f\\x9b\\x85"
    assert safe_text("\u202eevil\u202c \u2066x\u2069 \u200f \u2028") == "\\u202eevil\\u202c \\u2066x\\u2069 \\u200f \\u2028"
    assert safe_text("\ud800") == "\\ud800"  # a lone surrogate (JSON "\ud800") cannot even be encoded
    for text in ("fc1", "layer.0.weight", "épsilon σ 中文 🙂", "[bold]x[/]", "a\\x1b", ""):
        assert safe_text(text) == text


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_every_string_read_from_a_file_is_safe_to_show(corpus, name):
    """Layer names, the config's strings and keys, model, device, dataset, notice, event values and keys, metric
    names, the end's status, message, layer and traceback, a branch's config: all decoded as safe text."""
    with MetricsIndex(corpus[name]) as index:
        recs = list(every_record(index))
        texts = [s for r in recs for s in strings_in(r)] + [index.notice or ""] + index.notices
    assert recs and not [t for t in texts if UNSAFE_IN_FIELD.search(t)]
    if name != "esc_notice_in_name":
        assert any(safe_text(HOSTILE) in t for t in texts)  # the hostile text is shown, made visible
    stream = list(iter_records(corpus[name]))
    assert not [t for r in stream for t in strings_in(r) if UNSAFE_IN_FIELD.search(t)]


def test_the_escaped_strings_are_where_they_were(corpus):
    with MetricsIndex(corpus["esc_header"]) as index:
        h = index.runs[0].header
        assert h.model == h.device == h.config["activation"] == h.config["optimizer"] == safe_text(HOSTILE)
    with MetricsIndex(corpus["esc_layer_names"]) as index:
        run = index.runs[0]
        assert run.header.layer_names[0] == safe_text(HOSTILE) + "fc1" == run.snapshot(0).layers[0].name
        assert run.end.layer == safe_text(HOSTILE) + "fc1"
    with MetricsIndex(corpus["esc_events"]) as index:
        assert [e.set for e in index.runs[0].events] == [{"activation": safe_text(HOSTILE)},
                                                         {safe_text(HOSTILE): safe_text(HOSTILE)},
                                                         {"fork": safe_text(HOSTILE)}]
    with MetricsIndex(corpus["esc_metrics"]) as index:
        assert index.runs[0].snapshot(3).metrics == {safe_text(HOSTILE): 0.5, "acc": 0.25}
    with MetricsIndex(corpus["esc_branch_config"]) as index:
        b = index.runs[0].branches[0].header
        assert b.config["activation"] == b.model == safe_text(HOSTILE) and b.branch == "B"


def test_a_message_quoting_the_file_is_safe(tmp_path):
    hostile_name = tmp_path / "run\x1b]0;PWNED\x07.jsonl"
    hostile_name.write_text("not json\n")
    with pytest.raises(MetricsFileError) as e:
        MetricsIndex(hostile_name)
    assert not UNSAFE_IN_FIELD.search(str(e.value)) and "run\\x1b]0;PWNED\\x07.jsonl" in str(e.value)
    d = json.loads((FIXTURES / "sigmoid.jsonl").read_text().splitlines()[1])
    with pytest.raises(ValueError) as e:  # a KeyError naming a hostile key, a bad value quoted
        record_from_json({**d, "metrics": {"\x1b[2J": "x\x1b]0;t\x07"}})
    assert "\x1b" not in str(e.value)


# ---------------------------------------------------------------------------------------------- damaged lines
@pytest.mark.parametrize("name", sorted(AT_INDEX))
def test_a_damaged_line_is_skipped_with_a_notice_naming_it(corpus, name):
    lineno, said = AT_INDEX[name]
    with MetricsIndex(corpus[name]) as index:
        assert index.n_damaged == 1 + ORPHANS.get(name, 0) == len(index.notices)
        assert index.notices[0].startswith(f"line {lineno}: ") and said in index.notices[0], index.notices[0]
        assert index.notice.startswith(f"{index.n_damaged} damaged line") and f"(first: line {lineno}: " in index.notice
        assert all(not UNSAFE_IN_FIELD.search(n) for n in index.notices)
        for run in index.runs:  # everything else reads
            for r in (run, *run.branches):
                assert [s.step for s in r.iter_snapshots()] == list(r.snapshot_steps)
        if name in ORPHANS and name != "json_scalars":
            assert all(f"whose header (line {lineno}) is damaged" in n or "branch B before" in n
                       for n in index.notices[1:])


@pytest.mark.parametrize("name", sorted(AT_PARSE))
def test_a_snapshot_damaged_past_its_first_bytes_raises_damaged_naming_its_line(corpus, name):
    with MetricsIndex(corpus[name]) as index:
        bad = []
        for run in index.runs:
            for r in (run, *run.branches):
                for i in range(r.n_snapshots):
                    try:
                        snap = r.snapshot(i)
                    except MetricsFileError as e:
                        assert e.reason == "damaged" and said_once(str(e)) and AT_PARSE[name] in str(e), str(e)
                        bad.append(e.lineno)
                    else:
                        assert isinstance(snap, Snapshot) and snap.layers
        assert len(bad) >= 1 and index.n_damaged == 0, bad
        assert all(f"line {n} is " in str(_parse_error(index, n)) for n in bad)


def said_once(msg: str) -> bool:
    return "\n" not in msg and msg.count("the file is damaged there") == 1


def _parse_error(index, lineno):
    for run in index.runs:
        for r in (run, *run.branches):
            for i in range(r.n_snapshots):
                try:
                    r.snapshot(i)
                except MetricsFileError as e:
                    if e.lineno == lineno:
                        return e


@pytest.mark.parametrize("name", ["crlf", "blank_lines", "no_final_newline", "nan_values", "many_metrics",
                                  "long_line", "restarts", "end_then_more", "header_only", "schema1_then_schema3_lines",
                                  "torn_last_line"])
def test_odd_but_sound_files_read_whole(corpus, name):
    with MetricsIndex(corpus[name]) as index:
        assert index.n_damaged == 0 and all(r.header.layers for r in index.runs)
        n = sum(1 for r in every_record(index) if isinstance(r, Snapshot))
        assert n == sum(r.n_snapshots + sum(b.n_snapshots for b in r.branches) for r in index.runs)
        assert (index.notice is None) == (name != "torn_last_line")
    if name == "nan_values":
        with MetricsIndex(corpus[name]) as index:
            (s,) = [s for s in index.runs[0].iter_snapshots() if not np.isfinite(s.loss)]
            assert np.isnan(s.loss) and s.loss_avg == np.inf and s.layers[0].grad_norm == -np.inf
            assert np.isnan(s.layers[0].act_mean)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_file_that_is_not_a_metrics_file_is_refused_in_one_line(corpus, name):
    for read in (MetricsIndex, lambda p: list(iter_records(p))):
        with pytest.raises(MetricsFileError) as e:
            read(corpus[name])
        assert e.value.reason in ("empty", "binary", "not-metrics", "newer-schema") and "\n" not in str(e.value)
        assert str(e.value).startswith(corpus[name] + ": ") and "head -n 0" not in str(e.value)


def test_the_stream_reader_skips_what_the_index_skips_with_a_notice_record(corpus):
    for name, path in sorted(corpus.items()):
        if name in REFUSED:
            continue
        recs = list(iter_lines_records(open(path, "rb"), "<stdin>"))
        notices = [r for r in recs if isinstance(r, NoticeRecord)]
        with MetricsIndex(path) as index:  # the lines it skipped, and the snapshots that fail when parsed
            expected = index.n_damaged + sum(1 for r in index.runs for b in (r, *r.branches)
                                             for i in range(b.n_snapshots) if _fails(b, i))
        assert expected == (1 + ORPHANS.get(name, 0) if name in AT_INDEX else 1 if name in AT_PARSE else 0) or (
            name == "schema1_then_compact_lines" and expected == 13)
        assert len(notices) == expected, (name, [n.message for n in notices])
        assert isinstance(recs[0], RunRecord)
        for n in notices:
            assert n.message.startswith("<stdin>: line ") and n.message.endswith(": skipped")
            assert not UNSAFE_IN_FIELD.search(n.message)
        with pytest.raises(MetricsFileError) if expected or name == "torn_last_line" else _nothing():
            list(iter_lines_records(open(path, "rb"), "<stdin>", strict=True))


def _fails(run, i):
    try:
        run.snapshot(i)
    except MetricsFileError:
        return True
    return False


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_decoding_checks_types_and_ranges():
    lines = (FIXTURES / "forked.jsonl").read_text().splitlines()
    header = record_from_json(json.loads(lines[0]))
    snap = json.loads(lines[1])
    assert record_from_json(snap, header).step == 1
    for change in ({"step": 2**62 + 1}, {"step": 3.0}, {"epoch": None}, {"elapsed_s": "nan"}, {"elapsed_s": 1e999},
                   {"loss": "1.0"}, {"loss": True}, {"activation": 3}, {"metrics": {"a": None}}, {"layers": [{}]}):
        with pytest.raises(ValueError if "layers" not in change else KeyError):
            record_from_json({**snap, **change}, header)
    layer = snap["layers"][0]
    for hist in ({"counts": [1] * 60}, {"counts": [1], "first": 54}, {"counts": [1], "first": -1},
                 {"counts": [2**62, 2**62]}, {"counts": [1], "edges": [0, 0]}, {"counts": [1], "edges": [0, "inf"]},
                 {"counts": [1], "zeros": -1}):
        with pytest.raises(ValueError):
            record_from_json({**snap, "layers": [{**layer, "grad_hist": hist}]}, header)
    assert record_from_json({**snap, "step": 2**62}, header).step == 2**62


# ---------------------------------------------------------------------------------------------- the real commands
def _run_cli(args, capsys):
    rc = vgtui_main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_replay_and_export_without_a_terminal_survive_every_file(corpus, tmp_path, capsys):
    """`vgtui replay FILE` (no terminal: the summary) and `vgtui export FILE --csv OUT`, in this process: exit 0 or
    2, nothing raw, a refused file in one line."""
    for name, path in sorted(corpus.items()):
        rc, out, err = _run_cli(["replay", path], capsys)
        assert rc == (2 if name in REFUSED else 0), (name, err)
        assert not UNSAFE.search(out + err), (name, out + err)
        if name in REFUSED:
            assert err.count("\n") == 1 and err.startswith("vgtui: error: "), err
        else:
            assert f"{path}: run 1: " in out
            if name in AT_INDEX:
                assert f"damaged line{'s' if ORPHANS.get(name) else ''} skipped (first: line {AT_INDEX[name][0]}: " in err
        csv = tmp_path / f"{name}.csv"
        rc, out, err = _run_cli(["export", path, "--csv", str(csv)], capsys)
        assert rc == (2 if name in REFUSED else 0), (name, err)
        assert not UNSAFE.search(out + err), (name, out + err)
        assert csv.exists() != (name in REFUSED) and not RAW_BYTES.search(
            csv.read_bytes().replace(b"\r\n", b"\n") if csv.exists() else b"")  # the CSV's own line ends aside
    assert "\\x1b]0;PWNED\\x07" in _run_cli(["replay", corpus["esc_header"]], capsys)[1]


@pytest.mark.parametrize("name", ["esc_header", "esc_end", "step_nan", "layers_null", "deep_nesting",
                                  "second_header_damaged", "first_header_layers_null"])
def test_replay_piped_in_a_real_process_prints_no_raw_control_byte(corpus, name):
    for cmd in (["replay", corpus[name]], ["follow", corpus[name]]):
        p = subprocess.run([sys.executable, "-m", "vgtui", *cmd], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, cwd=ROOT)
        assert p.returncode == (2 if name in REFUSED else 0), p.stderr
        assert b"Traceback" not in p.stderr and not RAW_BYTES.search(p.stdout + p.stderr), p.stdout + p.stderr


# ---------------------------------------------------------------------------------------------- not regular files
@pytest.mark.parametrize("kind", ["fifo", "socket", "device_link", "device", "proc_mem", "directory"])
def test_what_is_not_a_regular_file_is_refused_in_one_line_by_every_command(tmp_path, kind):
    path = special_files(tmp_path)[kind]
    reason = {"proc_mem": "unreadable", "directory": "directory"}.get(kind, "not-regular")
    with pytest.raises(MetricsFileError) as e:
        MetricsIndex(path)  # a FIFO: refused without waiting for a writer
    assert e.value.reason == reason and "\n" not in str(e.value)
    assert {"fifo": "is a FIFO", "socket": "is a socket", "device_link": "is a character device", "device": "is a character device",
            "proc_mem": "cannot be read (Input/output error)", "directory": "is a directory"}[kind] in str(e.value)
    for cmd in (["replay", path], ["follow", path], ["export", path, "--csv", str(tmp_path / "out.csv")]):
        p = subprocess.run([sys.executable, "-m", "vgtui", *cmd], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, cwd=ROOT)
        assert p.returncode == 2 and p.stderr.count(b"\n") == 1 and b"Traceback" not in p.stderr, (cmd, p.stderr)
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------------------------- hostile sizes
def test_a_line_over_the_limit_is_skipped_unread(tmp_path):
    path = hostile_files(tmp_path, long_line_bytes=3 << 20)["long_line"]
    tracemalloc.start()
    try:
        with MetricsIndex(path, max_line=1 << 20) as index:
            _, peak = tracemalloc.get_traced_memory()
            run = index.runs[0]
            assert run.n_snapshots == 11 and index.n_damaged == 1 and [s.step for s in run.iter_snapshots()]
            assert index.notices[0].startswith("line 9: a line of 3,1") and "over the limit of 1 MiB" in index.notice
    finally:
        tracemalloc.stop()
    assert peak < 3 * metrics._CHUNK, peak  # chunks, never the line
    with MetricsIndex(path) as index:  # under the default limit the same line is read
        assert index.runs[0].n_snapshots == 12 and index.n_damaged == 0
    # the stream reader, from a pipe: the line skipped with a notice, never held whole
    r, w = os.pipe()
    data = Path(path).read_bytes()
    threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
    tracemalloc.start()
    try:
        recs = list(iter_lines_records(os.fdopen(r, "rb", buffering=0), "<stdin>", max_line=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    notes = [x for x in recs if isinstance(x, NoticeRecord)]
    assert len(notes) == 1 and "line 9: a line of 3,1" in notes[0].message
    assert sum(isinstance(x, Snapshot) for x in recs) == 11 and peak < (1 << 20) * 3


def test_the_real_limit_64_mib(tmp_path):
    lines = (FIXTURES / "sigmoid.jsonl").read_bytes().splitlines(keepends=True)
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        f.writelines(lines[:3])
        f.write(b'{"type":"event","step":1,"set":{"x":"' + b"a" * metrics.MAX_LINE_BYTES + b'"}}\n')
        f.writelines(lines[3:])
    assert metrics.MAX_LINE_BYTES == 64 << 20
    with MetricsIndex(path) as index:
        assert index.n_damaged == 1 and index.runs[0].n_snapshots == 12 and "over the limit of 64 MiB" in index.notice
    path.unlink()


class CountingReads:
    """The index's file, counting the bytes read from it."""

    def __init__(self, f):
        self.f, self.read_bytes = f, 0

    def read(self, n=-1):
        b = self.f.read(n)
        self.read_bytes += len(b)
        return b

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_following_a_growing_line_reads_each_byte_once(tmp_path):
    lines = (FIXTURES / "sigmoid.jsonl").read_bytes().splitlines(keepends=True)
    path = tmp_path / "grow.jsonl"
    path.write_bytes(lines[0])
    index = MetricsIndex(path, max_line=4 << 20)
    index._f = counting = CountingReads(index._f)
    big = (json.dumps({**json.loads(lines[1]), "metrics": {"m" * (3 << 20): 1}}) + "\n").encode()  # 3 MiB
    with open(path, "ab") as f:
        for k in range(0, len(big), 64 << 10):  # 48 pieces, the index refreshed after each
            f.write(big[k:k + (64 << 10)])
            f.flush()
            index.refresh()
            assert index.notice is None
    assert counting.read_bytes == len(big), counting.read_bytes  # read once: not once per refresh
    assert index.runs[0].n_snapshots == 1 and index.runs[0].snapshot(0).metrics == {"m" * (3 << 20): 1.0}
    # a growing line that passes the limit is dropped from memory, and skipped with a notice when it ends
    with open(path, "ab") as f:
        f.write(b'{"type":"event","step":1,"set":{"x":"')
        for k in range(6):
            f.write(b"x" * (1 << 20))
            f.flush()
            index.refresh()
            assert len(index._tail) <= 4 << 20 and index.n_damaged == 0
        assert len(index._tail) == 0 and index._skipping
        f.write(b'"}}\n' + b"".join(lines[2:4]))
    index.refresh()
    assert index.n_damaged == 1 and index.notices[0].startswith("line 3: a line of 6,291,")
    assert index.runs[0].n_snapshots == 3 and index.runs[0].snapshot(-1).step == 30
    index.close()


# ---------------------------------------------------------------------------------------------- follow: rewritten
def test_a_followed_file_truncated_or_replaced_is_read_again_and_said(tmp_path):
    lines = (FIXTURES / "sigmoid.jsonl").read_text().splitlines(keepends=True)
    path = tmp_path / "live.jsonl"
    path.write_text("".join(lines[:8]))
    src = FileSource(str(path), follow=True)
    src.open()
    assert src.run.n_snapshots == 6 and not src.poll().notice
    with open(path, "a") as f:
        f.write("garbage\n" + lines[8])
    change = src.poll()
    assert change.new_snapshots == (6, 7) and change.notice.startswith("damaged line 9: not JSON")
    path.write_text("".join(lines[:3]))  # truncated: a new run written over it
    change = src.poll()
    assert change.new_run and "the file was truncated" in change.notice and "read again from its start" in src.notice
    assert src.run.n_snapshots == 2 and src.index.n_damaged == 0
    other = tmp_path / "other.jsonl"
    other.write_text("".join(lines[:5]))
    os.replace(other, path)  # replaced (another inode)
    change = src.poll()
    assert change.new_run and change.notice == "the file was replaced: read again from its start"
    assert src.run.n_snapshots == 4 and src.run.snapshot(-1).step == 40
    other.write_text("this is not a metrics file\n")
    os.replace(other, path)
    change = src.poll()
    assert "no longer a metrics file" in change.notice and not change.new_run and src.run.n_snapshots == 4
    assert not src.poll().notice  # said once
    assert src.run.snapshot(0).step == 10  # what was read before is still shown
    other.write_text("".join(lines))
    os.replace(other, path)
    change = src.poll()
    assert change.new_run and src.run.n_snapshots == 12 and src.run.end.status == "completed"
    path.unlink()
    assert not src.poll().new_run  # gone: waited for
    src.close()


def test_a_stream_with_damaged_lines_goes_on(corpus):
    data = b"".join(Path(corpus[n]).read_bytes() for n in ("not_json",))
    data += b"\xff\xfe\n" + b"\x00\x00\n" + b'{"type":"snapshot","step":"nan"}\n'
    recs = list(iter_lines_records(io.BytesIO(data), "<stdin>"))
    notes = [r.message for r in recs if isinstance(r, NoticeRecord)]
    assert [n.split(": ")[1] for n in notes] == ["line 9", "line 19", "line 20", "line 21"]
    assert "not UTF-8" in notes[1] and "NUL" in notes[2] and isinstance(recs[-1], NoticeRecord)
    assert sum(isinstance(r, Snapshot) for r in recs) == 12


def test_follow_on_a_terminal_goes_on_through_damage_truncation_and_replacement(tmp_path):
    """The real `vgtui follow` on a pseudo-terminal: a damaged line appended, the file truncated, then replaced by
    another run: each said on screen, the viewer goes on, q quits with 0."""
    from ui.ptyrun import Tty

    lines = (FIXTURES / "sigmoid.jsonl").read_text().splitlines(keepends=True)
    path, other = tmp_path / "live.jsonl", tmp_path / "other.jsonl"
    path.write_text("".join(lines[:8]))
    with Tty(["follow", str(path)]) as tty:
        tty.wait_text("following")
        with open(path, "a") as f:
            f.write('{"type":"snapshot","step":"nan"}\n' + lines[8])
        tty.wait_text("damaged line 9")
        path.write_text("".join(lines[:3]))
        tty.wait_text("truncated")
        other.write_text("".join(lines[:5]))
        os.replace(other, path)
        tty.wait_text("replaced")
        tty.send(b"q")
        assert tty.wait() == 0
        assert b"Traceback" not in tty.out


@pytest.mark.parametrize("name", sorted(set(AT_INDEX) | set(AT_PARSE)))
def test_damage_appended_to_a_followed_file_is_a_notice(corpus, tmp_path, name):
    """Each damaged file written as a writer would, in pieces cut anywhere, and followed: the follower says what it
    skipped and ends with what reading the whole file gives."""
    data = Path(corpus[name]).read_bytes()
    first = data.index(b"\n") + 1
    path = tmp_path / "live.jsonl"
    path.write_bytes(data[:first])
    src = FileSource(str(path), follow=True)
    src.open()
    said = []
    cuts = [first, *range(first + 7777, len(data), len(data) // 5 + 1), len(data)]
    for a, b in zip(cuts, cuts[1:]):
        with open(path, "ab") as f:
            f.write(data[a:b])
        said.append(src.poll().notice)
    with MetricsIndex(corpus[name]) as whole:
        assert [r.n_snapshots for r in src.runs] == [r.n_snapshots for r in whole.runs]
        assert src.index.notices == whole.notices and src.index.n_damaged == whole.n_damaged
    assert bool([s for s in said if s]) == (name in AT_INDEX)
    src.close()
