"""The commands under hostile conditions (issue 13), through real processes: every command with each standard
stream closed; `vgtui compare` with bad entries in --metrics-dir, a seed range past the last seed, a network that
cannot fit, a metrics file that turns bad mid-way, SIGTERM while a configuration's seeds run, and `| head -1`.
And a true word (issue 14): headless names the epochs a --max-steps run trains, not --epochs."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from vgtui.commands import compare

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "VGTUI_DATA": "/nonexistent-vgtui-data"}
VGTUI = [sys.executable, "-m", "vgtui"]
TINY = ["--depth", "1", "--width", "8"]
STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}


def vgtui(args, close=None, stdin=subprocess.DEVNULL, timeout=120):
    """`python -m vgtui ARGS`, standard stream `close` (0, 1 or 2) closed in the child as by `<&-`, `>&-`, `2>&-`:
    (exit status, stdout, stderr); a closed stream reads back as ""."""
    pre = (lambda: os.close(close)) if close is not None else None
    p = subprocess.run([*VGTUI, *args], stdin=stdin, capture_output=True, text=True, timeout=timeout, env=ENV,
                       cwd=ROOT, preexec_fn=pre)
    return p.returncode, p.stdout, p.stderr


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]  # every line a record: nothing stray written into the file


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A short real run's metrics file."""
    path = tmp_path_factory.mktemp("rec") / "rec.jsonl"
    rc, _, err = vgtui(["--headless", "--dataset", "mnist-5k", *TINY, "--max-steps", "4", "--probe-every", "2",
                        "--metrics", str(path)])
    assert rc == 0, err
    return path


# ------------------------------------------------------------------------------------- closed standard streams
def _commands(tmp, rec):
    """name -> (argv, stdin, what each stream-closed case must give: {stream: (status, where the output goes)})."""
    return {
        "headless": (["--headless", "--dataset", "mnist-5k", *TINY, "--max-steps", "5", "--probe-every", "5",
                      "--metrics", str(tmp / "m.jsonl")], None),
        "replay": (["replay", str(rec)], None),
        "follow": (["follow", "-"], rec),
        "export": (["export", str(rec), "--csv", str(tmp / "out.csv")], None),
        "export-": (["export", str(rec), "--csv", "-"], None),
        "compare": (["compare", "sigmoid", *TINY, "--max-steps", "3", "--json"], None),
        "data": (["data", "download", "mnist", "--mirror", "file:///nonexistent-vgtui-mirror", "--data-dir",
                  str(tmp / "data")], None),
    }


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("command", ["headless", "replay", "follow", "export", "export-", "compare", "data"])
def test_every_command_runs_or_says_why_with_a_standard_stream_closed(command, stream, recorded, tmp_path):
    argv, feed = _commands(tmp_path, recorded)[command]
    fd = STREAMS[stream]
    with open(feed) if feed is not None else open(os.devnull) as stdin:
        rc, out, err = vgtui(argv, close=fd, stdin=stdin)
    said = out + err
    assert "Traceback" not in said and "Exception ignored" not in said, said
    shown = err if stream == "stdout" else out  # a report's stream: standard error while standard output is closed
    if command == "headless":
        assert rc == 0, said
        assert "epoch 1/1 (5 of 40 steps)" in shown and "done: 5 steps" in shown
        if stream == "stdout":
            assert err.startswith("vgtui: standard output is closed: the report goes to standard error\n")
        recs = lines_of(tmp_path / "m.jsonl")
        assert recs[0]["type"] == "run" and recs[-1]["type"] == "end" and recs[-1]["status"] == "completed"
    elif command == "replay":
        assert rc == 0, said
        if stream != "stdout":
            assert "run 1: MLP 784-8x1-10 sigmoid" in out
    elif command == "follow":
        assert rc == 2
        why = ("vgtui follow: error: standard input is closed: nothing to follow" if stream == "stdin"
               else "needs a terminal for its keys")  # the no-terminal answer, given stdin or not
        if stream != "stderr":
            assert why in err and len(err.splitlines()) == 1, err
        assert out == ""
    elif command == "export":
        assert rc == 0, said
        assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 3 * 2  # 3 snapshots x 2 layers
    elif command == "export-":
        if stream == "stdout":  # the CSV would vanish: said in one line (export's own rule)
            assert rc == 141
            assert err == "vgtui: error: --csv -: standard output is closed; name a file to write instead\n"
        else:
            assert rc == 0 and out.startswith("step,epoch,") and len(out.splitlines()) == 7, said
    elif command == "compare":
        assert rc == 0, said
        table = json.loads(shown[shown.index("{"):])
        assert [r["configuration"] for r in table["rows"]] == ["sigmoid"] and table["rows"][0]["steps"] == 3
        if stream == "stdout":
            assert err.startswith("vgtui compare: standard output is closed: the table goes to standard error\n")
        else:
            assert out.startswith("{")
    elif command == "data":
        assert rc == 2
        assert out == ""  # the error never lands on standard output, even with standard error closed
        if stream != "stderr":
            assert err.startswith("vgtui: error: cannot download mnist") and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------- compare: refused up front
def _foreign(p):
    p.write_text("my own notes\n")


def _fifo(p):
    os.mkfifo(p)


@pytest.mark.parametrize("make, says", [
    (_foreign, "exists and is not a vgtui metrics file"),
    (lambda p: p.mkdir(), "is a directory"),
    (_fifo, "is a FIFO (named pipe)"),
    (lambda p: os.symlink("/dev/null", p), "is a character device"),
])
def test_compare_refuses_a_bad_entry_in_metrics_dir_before_anything_trains(make, says, tmp_path):
    make(tmp_path / "relu.jsonl")  # the second configuration's file: the first would have finished before
    rc, out, err = vgtui(["compare", "sigmoid", "relu", *TINY, "--max-steps", "3", "--metrics-dir", str(tmp_path)],
                         timeout=60)
    assert rc == 2 and out == "", err
    line = err.splitlines()[-1]
    assert line == (f"vgtui compare: error: --metrics-dir {tmp_path}: {tmp_path / 'relu.jsonl'}: {says}; compare "
                    "writes one file per configuration there: move that away, or choose another --metrics-dir")
    assert "[1/2]" not in err and "Traceback" not in err and not (tmp_path / "sigmoid.jsonl").exists()


def test_compare_refuses_a_locked_file_and_an_unwritable_folder(tmp_path):
    held = tmp_path / "relu.seed1.jsonl"  # a seed's file: several seeds, each its own file, each checked
    with open(held, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another run writing it
        rc, out, err = vgtui(["compare", "relu", *TINY, "--max-steps", "3", "--seeds", "2", "--metrics-dir",
                              str(tmp_path)], timeout=60)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert f"{held}: another vgtui run (pid {os.getpid()}) is writing it; compare writes" in err.splitlines()[-1]
    rc, out, err = vgtui(["compare", "relu", *TINY, "--max-steps", "3", "--metrics-dir", "/proc/self"], timeout=60)
    assert rc == 2 and out == "" and "/proc/self/relu.jsonl: cannot write in /proc/self" in err, err
    (tmp_path / "file").write_text("")
    rc, _, err = vgtui(["compare", "relu", "--metrics-dir", str(tmp_path / "file")], timeout=60)
    assert rc == 2 and f"--metrics-dir {tmp_path / 'file'}: cannot make that folder" in err


@pytest.mark.parametrize("argv, says", [
    (["--seed", str(2**63 - 2), "--seeds", "3"], f"--seeds 3 from --seed {2**63 - 2} runs past the largest seed"),
    (["--seed", str(2**63 - 1), "--seeds", "2"], "runs past the largest seed, 2**63-1"),
    (["relu+width1000000"], "'relu+width1000000': --width/--depth: a 5 x 1000000 network needs about"),
    (["relu+depth1000+width30000"], "'relu+depth1000+width30000': --width/--depth: a 1000 x 30000 network needs"),
])
def test_compare_refuses_seed_overflow_and_networks_that_cannot_fit(argv, says):
    rc, out, err = vgtui(["compare", "sigmoid", *argv], timeout=60)
    assert rc == 2 and out == "" and says in err and "Traceback" not in err, err
    assert "[1/" not in err  # nothing trained first
    if "width" in says:  # the same words as `vgtui --headless` gives for it
        _, _, headless = vgtui(["--headless", "--width", "1000000"], timeout=60)
        assert "a 5 x 1000000 network needs about" in headless and "Use a smaller --width or --depth." in err


# ------------------------------------------------------------------------------------- compare: mid-way and stopped
def test_a_metrics_file_that_turns_bad_mid_way_ends_with_one_line_and_the_table(tmp_path):
    """The second configuration's file becomes a directory while the first trains: one line, the first's row,
    exit 4 (its metrics file could not be written)."""
    first, second = tmp_path / "sigmoid+depth1+width8.jsonl", tmp_path / "relu+depth1+width8.jsonl"
    p = subprocess.Popen([*VGTUI, "compare", "sigmoid+depth1+width8", "relu+depth1+width8", "--epochs", "100",
                          "--max-steps", "1500", "--probe-every", "100", "--json", "--metrics-dir", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not first.exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.005)
        second.mkdir()  # the first configuration is training now (1,500 steps)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 4, err
    assert (f"vgtui compare: error: relu+depth1+width8 (seed 0): its metrics file {second}: is a directory; stopped "
            "there, the table of what finished:") in err.splitlines()
    assert "Traceback" not in err
    (row,) = json.loads(out)["rows"]
    assert row["configuration"] == "sigmoid+depth1+width8" and row["steps"] == 1500 and not row["partial"]
    assert lines_of(first)[-1]["type"] == "end"


def test_sigterm_keeps_the_finished_seeds_of_the_running_configuration():
    p = subprocess.Popen([*VGTUI, "compare", "sigmoid+depth1+width8", "relu+depth1+width8", "--seeds", "2",
                          "--epochs", "100", "--max-steps", "1200", "--probe-every", "100", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        err = ""
        deadline = time.monotonic() + 120
        while "[3/4]" not in err and time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            err += line
        assert "[3/4] relu+depth1+width8 (seed 0): completed" in err, err
        p.send_signal(signal.SIGTERM)  # relu's second seed is training (1,200 steps)
        out, rest = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143, rest
    assert "terminated (SIGTERM); the table of what finished:" in rest and "Traceback" not in rest
    rows = json.loads(out)["rows"]
    assert [(r["configuration"], r["seeds"], r["partial"]) for r in rows] == [
        ("sigmoid+depth1+width8", [0, 1], False), ("relu+depth1+width8", [0], True)]
    assert rows[1]["steps"] == 1200 and rows[1]["status"] == "completed"  # only the seed that finished


def test_a_partial_row_is_marked_in_the_text_table():
    done = compare.Result("relu", 0, status="completed", steps=10)
    text = compare.format_text([compare.Row("relu", [done], planned=3)], None, "setup", 5)
    assert "relu (partial: 1 of 3 seeds)" in text.splitlines()[2]
    assert "(partial" not in compare.format_text([compare.Row("relu", [done], planned=1)], None, "s", 5)


def test_compare_into_head_exits_141_like_headless():
    cmd = (f"{sys.executable} -m vgtui compare sigmoid+depth1+width8 relu+depth1+width8 --max-steps 300 2>&1 "
           "| head -1; exit ${PIPESTATUS[0]}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert r.stdout.startswith("[1/2] sigmoid+depth1+width8 (seed 0): completed") and len(r.stdout.splitlines()) == 1
    assert r.returncode == 141 and r.stderr == "", r.stderr
    rd, w = os.pipe()
    os.close(rd)  # standard error's reader gone, standard output fine: the progress is dropped, the table printed
    p = subprocess.run([*VGTUI, "compare", "sigmoid+depth1+width8", "relu+depth1+width8", "--max-steps", "3",
                        "--json"], stdout=subprocess.PIPE, stderr=w, text=True, env=ENV, cwd=ROOT, timeout=120)
    os.close(w)
    assert p.returncode == 0 and len(json.loads(p.stdout)["rows"]) == 2


# ------------------------------------------------------------------------------------- headless: the epochs it says
def test_headless_with_max_steps_names_the_epochs_the_run_trains():
    """mnist-5k has 40 steps an epoch: --max-steps 190 trains 4 epochs and 30 steps of a 5th (of --epochs 10)."""
    rc, out, err = vgtui(["--headless", "--dataset", "mnist-5k", *TINY, "--max-steps", "190", "--probe-every", "50"])
    assert rc == 0, err
    assert "· 190 steps (--max-steps: 4 epochs of 40 steps and 30 of a 5th, not 10)" in out.splitlines()[0]
    epochs = [l.split("  ")[0] for l in out.splitlines() if l.startswith("epoch ")]
    assert epochs == ["epoch 1/5", "epoch 2/5", "epoch 3/5", "epoch 4/5", "epoch 5/5 (30 of 40 steps)"]
    assert "/10" not in out
    rc, out, _ = vgtui(["--headless", "--dataset", "mnist-5k", *TINY, "--max-steps", "80", "--epochs", "3"])
    assert "· 80 steps (--max-steps: 2 epochs of 40 steps, not 3)" in out and "epoch 2/2  step 80" in out
    rc, out, _ = vgtui(["--headless", "--dataset", "mnist-5k", *TINY, "--epochs", "2", "--max-steps", "500"])
    assert "· 80 steps\n" in out or out.splitlines()[0].endswith("· 80 steps")  # not cut short: nothing to add
    assert "epoch 2/2  step 80" in out
