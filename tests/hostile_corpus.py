"""A corpus of damaged and hostile metrics files, built from real recorded runs (tests/ui/fixtures).

    from hostile_corpus import hostile_files, special_files, REFUSED, ESCAPES   # tests/ is on sys.path
    files = hostile_files(tmp_path)          # {name: path}: ~40 regular files
    specials = special_files(tmp_path)       # {name: path}: a FIFO, a socket, a link to a device, /proc/self/mem

Every file of `hostile_files` is a regular file. Those named in REFUSED are not metrics files at all (their first
line is not a run header that can be read): a reader refuses them with one line (exit status 2). Every other file
opens: its damaged lines are skipped with a notice, and its hostile strings (names in ESCAPES) are shown as text.
No file holds a control byte that reaches a terminal once read: each one of them is written as a JSON escape
(\\u001b) except where the damage is the raw byte itself (`raw_control_bytes`, `invalid_utf8`, ...).
`special_files` are not regular files: every command refuses them with one line.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path

FIXTURES = Path(__file__).parent / "ui" / "fixtures"
SIGMOID = FIXTURES / "sigmoid.jsonl"  # schema 1, 16 snapshots, histograms with their edges
FORKED = FIXTURES / "forked.jsonl"  # schema 3, a run and its fork (branch B), edges in the header

# strings that would act on a terminal if written raw
OSC_TITLE = "\x1b]0;PWNED\x07"  # retitles the terminal
CLEAR = "\x1b[2J\x1b[H"  # blanks the screen
CSI_C1 = "\x9b31m"  # C1 CSI (8-bit): red on some terminals
BIDI = "\u202eevil\u202c\u2066x\u2069"  # right-to-left override, isolates (Trojan Source)
HOSTILE = OSC_TITLE + CLEAR + "\r\n\t\x7f" + CSI_C1 + BIDI + "\ud800[bold red]markup[/]"  # \ud800: a lone surrogate

REFUSED = frozenset({"empty", "blank_lines_only", "first_not_json", "first_is_snapshot", "first_header_damaged",
                     "first_header_layers_null", "binary_start", "first_json_array", "newer_schema"})
ESCAPES = frozenset({"esc_header", "esc_layer_names", "esc_end", "esc_events", "esc_metrics", "esc_branch_config",
                     "esc_keys", "esc_notice_in_name"})


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _line(d: object) -> bytes:
    return (json.dumps(d, separators=(",", ":")) + "\n").encode()


def _write(path: Path, lines: list[bytes | dict | str]) -> str:
    with open(path, "wb") as f:
        for x in lines:
            f.write(x if isinstance(x, bytes) else x.encode() if isinstance(x, str) else _line(x))
    return str(path)


def _snap_indices(recs: list[dict], branch: str | None = None) -> list[int]:
    return [i for i, r in enumerate(recs) if r["type"] == "snapshot" and r.get("branch") == branch]


def hostile_files(dirpath: str | os.PathLike, long_line_bytes: int = 1 << 20) -> dict[str, str]:
    """Write the corpus into `dirpath` (created if need be); {name: path of name.jsonl}. `long_line_bytes`: the
    size of the one long (but whole and valid) snapshot line of `long_line.jsonl`; make it larger than the reader's
    line limit to test that limit."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    sig, fork = _records(SIGMOID), _records(FORKED)
    sig_raw = SIGMOID.read_bytes().splitlines(keepends=True)
    files: dict[str, str] = {}

    def put(name: str, lines: list) -> None:
        files[name] = _write(d / f"{name}.jsonl", lines)

    def mutated(base: list[dict], i: int, change) -> list[dict]:
        recs = copy.deepcopy(base)
        change(recs[i])
        return recs

    s = _snap_indices(sig)  # snapshot lines of sigmoid.jsonl
    mid = s[len(s) // 2]

    # --- refused: not a metrics file at all
    put("empty", [])
    put("blank_lines_only", ["\n \n\t\n"])
    put("first_not_json", ["this is not json\n", *sig[1:]])
    put("first_is_snapshot", sig[1:])
    put("first_header_damaged", [b'{"type":"run","schema":1,"layers":[' + b"\n", *sig[1:]])
    put("first_header_layers_null", [mutated(sig, 0, lambda r: r.update(layers=None))[0], *sig[1:]])
    put("binary_start", [b"\x00\x01\x02\x7fELF" * 100 + b"\n", *sig])
    put("first_json_array", [[1, 2, 3], *sig])
    put("newer_schema", [{**sig[0], "schema": 99}, *sig[1:]])

    # --- escape sequences in every string field (as JSON escapes: valid lines)
    put("esc_header", mutated(sig, 0, lambda r: (
        r["config"].update(activation=HOSTILE, optimizer=HOSTILE, dataset=HOSTILE, device=HOSTILE, init=HOSTILE,
                           data_dir=HOSTILE),
        r.update(dataset=HOSTILE, device=HOSTILE, model=HOSTILE, source=HOSTILE, version=HOSTILE,
                 device_name=HOSTILE, notice=HOSTILE, started=HOSTILE))))

    def rename_layers(recs: list[dict]) -> list[dict]:
        recs = copy.deepcopy(recs)
        for r in recs:
            if r["type"] == "run":
                r["layers"] = [(HOSTILE + n if isinstance(n, str) else {**n, "name": HOSTILE + n["name"]})
                               for n in r["layers"]]
            elif r["type"] == "snapshot":
                for layer in r["layers"]:
                    layer["name"] = HOSTILE + layer["name"]
                    if "activation" in layer:
                        layer["activation"] = HOSTILE
                r["activation"] = HOSTILE
            elif r["type"] == "end":
                r["layer"] = HOSTILE + "fc1"
        return recs

    put("esc_layer_names", rename_layers(sig))
    put("esc_end", [*sig[:-1], {**sig[-1], "status": "completed", "message": HOSTILE, "layer": HOSTILE,
                                "traceback": HOSTILE}])
    put("esc_events", [*sig[:mid], {"type": "event", "step": 40, "elapsed_s": 1.0, "set": {"activation": HOSTILE}},
                       {"type": "event", "step": 41, "elapsed_s": 1.0, "set": {HOSTILE: HOSTILE}},
                       {"type": "event", "step": 42, "elapsed_s": 1.0, "set": {"fork": HOSTILE}}, *sig[mid:]])
    put("esc_metrics", [sig[0], *[{**r, "metrics": {HOSTILE: 0.5, "acc": 0.25}} if r["type"] == "snapshot" else r
                                  for r in sig[1:]]])
    fb = [i for i, r in enumerate(fork) if r["type"] == "run" and r.get("branch") == "B"][0]
    put("esc_branch_config", mutated(fork, fb, lambda r: (r["config"].update(activation=HOSTILE, optimizer=HOSTILE),
                                                          r.update(model=HOSTILE, device=HOSTILE))))
    put("esc_keys", mutated(sig, 0, lambda r: r["config"].update({HOSTILE: HOSTILE})))
    put("esc_notice_in_name", [*sig[:mid], {"type": "end", "status": HOSTILE, "steps": 1, "elapsed_s": 1.0},
                               *sig[mid:]])  # an unknown status: a damaged line, whose notice must not be raw

    # --- damaged lines after a good header: each skipped with a notice, its neighbours kept
    put("not_json", [*sig[:mid], "garbage {\n", *sig[mid:]])
    put("raw_control_bytes", [*sig[:mid], b'{"type":"event","step":1,"set":{"activation":"\x1b]0;PWNED\x07"}}\n',
                              *sig[mid:]])  # a raw control byte in a string: not JSON
    put("invalid_utf8", [*sig_raw[:mid], sig_raw[mid].replace(b'"fc2"', b'"fc\xff\xfe2"'), *sig_raw[mid + 1:]])
    put("nul_in_middle", [*sig_raw[:mid], b"\x00" * 64 + b"\n", *sig_raw[mid:]])
    put("nul_in_second_line", [sig_raw[0], b'{"type":"event","step":1,"set":{"a":"\x00"}}\n', *sig_raw[1:]])
    put("truncated_middle", [*sig_raw[:mid], sig_raw[mid][:len(sig_raw[mid]) // 2] + b"\n", *sig_raw[mid + 1:]])
    put("json_scalars", [*sig[:mid], "null\n", "[1,2]\n", '"snapshot"\n', "42\n", "{}\n", *sig[mid:]])
    put("layers_null", mutated(sig, mid, lambda r: r.update(layers=None)))
    put("layers_string", mutated(sig, mid, lambda r: r.update(layers="fc1")))
    put("layer_not_dict", mutated(sig, mid, lambda r: r["layers"].__setitem__(1, 7)))
    put("layer_name_number", mutated(sig, mid, lambda r: r["layers"][0].update(name=12)))
    put("hist_counts_too_many", mutated(sig, mid, lambda r: r["layers"][0]["grad_hist"].update(
        counts=[1] * 500)))
    put("hist_counts_negative", mutated(sig, mid, lambda r: r["layers"][0]["grad_hist"].update(
        counts=[-5, 3])))
    put("hist_counts_overflow", mutated(sig, mid, lambda r: r["layers"][0]["grad_hist"].update(
        counts=[10 ** 30])))
    put("hist_counts_float", mutated(sig, mid, lambda r: r["layers"][0]["act_hist"].update(counts=[1.5, "x"])))
    put("hist_edges_bad", mutated(sig, mid, lambda r: r["layers"][0]["grad_hist"].update(edges=["nan", 1, 0])))
    put("hist_edges_short", mutated(sig, mid, lambda r: r["layers"][0]["grad_hist"].update(edges=[1.0])))
    put("hist_not_dict", mutated(sig, mid, lambda r: r["layers"][0].update(grad_hist=[1, 2, 3])))
    put("hist_under_string", mutated(sig, mid, lambda r: r["layers"][0]["grad_hist"].update(under="many")))
    put("float_string", mutated(sig, mid, lambda r: r["layers"][2].update(grad_norm="big")))
    put("float_list", mutated(sig, mid, lambda r: r.update(loss=[1.0])))
    put("metric_string", [*sig[:mid], {**sig[mid], "metrics": {"acc": "high"}}, *sig[mid + 1:]])
    put("metric_nested", [*sig[:mid], {**sig[mid], "metrics": {"acc": {"top1": 1}}}, *sig[mid + 1:]])
    put("metrics_not_dict", [*sig[:mid], {**sig[mid], "metrics": [0.5]}, *sig[mid + 1:]])
    for name, step in (("step_huge", 10 ** 30), ("step_fractional", 10.5), ("step_nan", "nan"), ("step_negative", -5),
                       ("step_string", "ten"), ("step_bool", True), ("step_inf_float", 1e400)):
        put(name, mutated(sig, mid, lambda r, step=step: r.update(step=step)))
    # the same damage in the layout the index reads from a line's first bytes (no JSON parse)
    head = b'{"type":"snapshot","step":'
    assert sig_raw[mid].startswith(head)
    rest = sig_raw[mid][len(head):].split(b",", 1)[1]
    put("prefix_step_many_digits", [*sig_raw[:mid], head + b"9" * 5000 + b"," + rest, *sig_raw[mid + 1:]])
    put("prefix_step_huge", [*sig_raw[:mid], head + b"99999999999999999999999," + rest, *sig_raw[mid + 1:]])
    el = sig_raw[mid].index(b'"elapsed_s":') + len(b'"elapsed_s":')
    el_end = sig_raw[mid].index(b",", el)
    put("prefix_elapsed_word", [*sig_raw[:mid], sig_raw[mid][:el] + b'"hello"' + sig_raw[mid][el_end:],
                                *sig_raw[mid + 1:]])
    put("prefix_elapsed_garbage", [*sig_raw[:mid], sig_raw[mid][:el] + b"1e5e5.." + sig_raw[mid][el_end:],
                                   *sig_raw[mid + 1:]])
    put("epoch_wrong_types", [*sig[:mid], {"type": "epoch", "epoch": "one", "step": [40], "train_loss": {},
                                           "train_acc": 0.1, "test_loss": 1, "test_acc": 0.1, "elapsed_s": 1},
                              *sig[mid:]])
    put("event_set_not_dict", [*sig[:mid], {"type": "event", "step": 40, "set": "activation=relu"}, *sig[mid:]])
    put("event_lr_string", [*sig[:mid], {"type": "event", "step": 40, "set": {"lr": "fast"}}, *sig[mid:]])
    put("event_activation_number", [*sig[:mid], {"type": "event", "step": 40, "set": {"activation": 5}}, *sig[mid:]])
    put("end_wrong_types", [*sig[:-1], {**sig[-1], "steps": "all", "message": ["x"]}])
    put("end_then_more", [*sig, *sig[1:4]])  # records after the end record: they are kept (a run may go on)
    put("deep_nesting", [*sig[:mid], b'{"type":"event","step":1,"set":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
                         *sig[mid:]])
    put("huge_int_literal", [*sig[:mid], b'{"type":"progress","step":' + b"7" * 100_000 + b',"epoch":1,'
                             b'"elapsed_s":1,"loss":1}\n', *sig[mid:]])
    put("unknown_type", [*sig[:mid], {"type": "\x1b]0;PWNED\x07", "step": 1}, *sig[mid:]])
    # a schema-1 header, then a schema-3 run's lines: their histograms need edges that header does not hold
    put("schema1_then_schema3_lines", [sig[0], *fork[1:]])
    header_edges = (fork[0]["grad_edges"], fork[0]["act_edges"].get("sigmoid"))

    def compact(r: dict) -> dict:  # a schema-3 snapshot as the writer leaves it: no edges the header holds
        r = copy.deepcopy(r)
        for layer in r.get("layers", []) if r["type"] == "snapshot" else []:
            for h in (layer.get("grad_hist"), layer.get("act_hist")):
                if h is not None and h.get("edges") in header_edges:
                    del h["edges"]
        return r

    put("schema1_then_compact_lines", [sig[0], *[compact(r) for r in fork[1:]]])
    # branch damage
    put("unknown_branch", [*fork[:5], {**fork[4], "branch": "Z"}, *fork[5:]])
    put("branch_before_header", [fork[0], fork[18], {**fork[18], "branch": "B"}, *fork[1:]])
    put("branch_not_string", [*fork[:5], {**fork[4], "branch": ["B"]}, *fork[5:]])
    # a second run whose header is damaged: its records are skipped with it
    put("second_header_damaged", [*sig, {**sig[0], "layers": None}, *sig[1:5], sig[0], *sig[1:3]])
    put("second_header_newer_schema", [*sig, {**sig[0], "schema": 99}, *sig[1:5]])
    put("header_wrong_types", [*sig[:-1], {**sig[0], "total_steps": "many", "steps_per_epoch": -1, "pid": "me"},
                               *sig[1:4]])
    put("header_config_not_dict", [*sig, {**sig[0], "config": "sgd"}, *sig[1:3]])
    put("header_config_lr_string", [*sig, {**sig[0], "config": {**sig[0]["config"], "lr": "fast", "seed": "x"}},
                                    *sig[1:3]])
    run_a = [r for r in fork[1:] if r.get("branch") is None][:4]
    put("header_edges_bad", [*fork[:1], *run_a, {**fork[0], "grad_edges": [3, 2, 1]}, *run_a])

    # --- benign oddities that must read as the good file does
    put("crlf", [line.rstrip(b"\n") + b"\r\n" for line in sig_raw])
    put("blank_lines", [b"\n", *[x for line in sig_raw for x in (line, b"   \n")]])
    put("no_final_newline", [*sig_raw[:-1], sig_raw[-1].rstrip(b"\n")])
    put("torn_last_line", [*sig_raw, sig_raw[mid][:100]])
    put("nan_values", mutated(sig, mid, lambda r: (r.update(loss="nan", loss_avg="inf"),
                                                   r["layers"][0].update(grad_norm="-inf", act_mean="nan"))))
    put("header_only", [sig[0]])
    put("many_metrics", [sig[0], *[{**r, "metrics": {f"m{k}": k * 0.5 for k in range(10_000)}}
                                   if r["type"] == "snapshot" else r for r in sig[1:]]])
    put("layers_empty", mutated(sig, mid, lambda r: r.update(layers=[])))
    put("restarts", [*sig, *sig, *fork, *sig[:5]])  # runs one after another, one not ended
    # one long line: a snapshot whose metric name pads it to long_line_bytes (whole, valid JSON)
    pad = max(long_line_bytes - len(_line(sig[mid])) - 20, 0)
    put("long_line", [*sig[:mid], {**sig[mid], "metrics": {"x" * pad: 1.0}}, *sig[mid + 1:]])
    return files


def special_files(dirpath: str | os.PathLike) -> dict[str, str]:
    """Paths that are not regular files: a FIFO (nothing ever written to it), a Unix socket, a symbolic link to a
    character device, /proc/self/mem (open() works, read() fails with EIO), and a directory."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    fifo = d / "fifo.jsonl"
    os.mkfifo(fifo)
    out["fifo"] = str(fifo)
    sock_path = d / "sock.jsonl"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()  # the socket file stays
    out["socket"] = str(sock_path)
    link = d / "zero.jsonl"
    os.symlink("/dev/zero", link)
    out["device_link"] = str(link)
    out["device"] = "/dev/zero"
    out["proc_mem"] = "/proc/self/mem"
    sub = d / "adir.jsonl"
    sub.mkdir()
    out["directory"] = str(sub)
    return out
