"""Where `vgtui export` writes, through the real command: only a regular file the person named is ever replaced.

Never a device (as root, `--csv /dev/null` once replaced the device with a regular file), a FIFO (without
blocking), a symbolic link (neither the link nor what it points to), the metrics file itself (by name, by a hard
link, through standard output); a link planted at a guessable temporary name redirects nothing, an input named
like a temporary file is read, not destroyed. `--csv -` writes to standard output, and a closed or broken one
ends in one line or exit 141. A damaged snapshot is skipped with one line naming it, and the rest is written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from test_datacmd import mirror  # noqa: F401 - the fixture: a local mirror of the embedded digits
from vgtui.core.metrics import MetricsIndex
from vgtui.core.outfile import RefusedPath, write_new, write_replacing
from vgtui.core.csvfile import COLUMNS, write_csv

FIXTURES = ROOT / "tests" / "ui" / "fixtures"
SIGMOID = FIXTURES / "sigmoid.jsonl"  # 12 snapshots x 6 layers: 72 rows
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def copy_of_fixture(path):
    path.write_bytes(SIGMOID.read_bytes())
    return path


def refused(r, said: str) -> None:
    """Exit 2, nothing on standard output, one line on standard error that says `said`."""
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.startswith("vgtui: error: --csv ") and said in r.stderr and r.stderr.count("\n") == 1, r.stderr


def no_temporary_left(folder) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def test_dev_null_stays_a_device():
    """As root, rename(2) would replace /dev/null itself; it is refused before anything is written."""
    before = os.lstat("/dev/null")
    try:
        r = run_cli(["export", str(SIGMOID), "--csv", "/dev/null"], timeout=60)
        refused(r, "/dev/null: is a character device, not a regular file")
    finally:
        after = os.lstat("/dev/null")
        if not stat.S_ISCHR(after.st_mode) and os.geteuid() == 0:  # put the machine right before failing
            os.unlink("/dev/null")
            os.mknod("/dev/null", 0o666 | stat.S_IFCHR, before.st_rdev)
            os.chmod("/dev/null", 0o666)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    no_temporary_left(ROOT)


@ROOT_ONLY
def test_a_device_node_of_ones_own_stays_a_device(tmp_path):
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    refused(run_cli(["export", str(SIGMOID), "--csv", str(dev)], timeout=60), "is a character device")
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    no_temporary_left(tmp_path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    refused(run_cli(["export", str(SIGMOID), "--csv", str(fifo)], timeout=30), "is a FIFO (named pipe)")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    no_temporary_left(tmp_path)


@pytest.mark.parametrize("to", ["victim", "dangling", "metrics"])
def test_a_symbolic_link_is_refused_and_left_as_it_is(tmp_path, to):
    """A link to someone's file, a dangling link (the write would create its target), a link to the input."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    src = copy_of_fixture(tmp_path / "run.jsonl")
    target = {"victim": victim, "dangling": tmp_path / "nowhere.txt", "metrics": src}[to]
    link = tmp_path / "out.csv"
    link.symlink_to(target)
    before = digest(src)
    refused(run_cli(["export", str(src), "--csv", str(link)], timeout=60), "is a symbolic link")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert victim.read_text() == "precious\n" and digest(src) == before
    assert not (tmp_path / "nowhere.txt").exists()
    no_temporary_left(tmp_path)


@pytest.mark.parametrize("how", ["same name", "another spelling", "hard link"])
def test_the_input_itself_is_refused(tmp_path, how):
    src = copy_of_fixture(tmp_path / "run.csv")  # a metrics file that happens to be called *.csv
    out = {"same name": src, "another spelling": tmp_path / "." / "run.csv", "hard link": tmp_path / "also.csv"}[how]
    if how == "hard link":
        os.link(src, out)
    before = digest(src)
    r = run_cli(["export", str(src), "--csv", str(out)], timeout=60)
    refused(r, "is the metrics file itself")
    assert ("a hard link" in r.stderr) == (how == "hard link")
    assert digest(src) == before and MetricsIndex(src).runs[0].n_snapshots == 12
    no_temporary_left(tmp_path)


def test_the_input_through_standard_output_is_refused(tmp_path):
    """`vgtui export run.jsonl --csv - >> run.jsonl` would write the CSV into the file it reads."""
    src = copy_of_fixture(tmp_path / "run.jsonl")
    before = digest(src)
    with open(src, "ab") as out:
        r = subprocess.run([sys.executable, "-m", "vgtui", "export", str(src), "--csv", "-"], stdout=out,
                           stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "standard output is the metrics file itself" in r.stderr and digest(src) == before


def test_a_link_planted_at_the_old_temporary_name_redirects_nothing(tmp_path):
    """The temporary file was `.out.csv.part`, followed if it was a link: now it is mkstemp's, in the same folder,
    created exclusively under a name nobody can guess; what sits at the old name is not touched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    planted = tmp_path / ".out.csv.part"
    planted.symlink_to(victim)
    out = tmp_path / "out.csv"
    r = run_cli(["export", str(SIGMOID), "--csv", str(out)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious\n" and planted.is_symlink() and os.readlink(planted) == str(victim)
    assert not out.is_symlink() and len(list(csv.reader(open(out)))) == 73
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.csv.part", "out.csv", "victim.txt"]


def test_an_input_named_like_a_temporary_file_is_read_not_destroyed(tmp_path):
    src = copy_of_fixture(tmp_path / ".out.csv.part")
    before = digest(src)
    r = run_cli(["export", str(src), "--csv", str(tmp_path / "out.csv")], timeout=60)
    assert r.returncode == 0, r.stderr
    assert digest(src) == before and len(list(csv.reader(open(tmp_path / "out.csv")))) == 73


def test_an_existing_regular_file_is_replaced_whole_its_mode_kept(tmp_path):
    """What the person named (`--csv` says "replaced if it exists"): the old file goes, a new one appears whole."""
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    r = run_cli(["export", str(SIGMOID), "--csv", str(out)], timeout=60)
    assert r.returncode == 0 and "72 rows (12 snapshots x 6 layers) of run 1" in r.stderr, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and open(out).readline().strip() == ",".join(COLUMNS)
    new = tmp_path / "new.csv"
    old_umask = os.umask(0o027)
    try:
        write_csv(SIGMOID, new)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o640  # 0666 less the umask, not mkstemp's 0600
    no_temporary_left(tmp_path)


def test_csv_dash_writes_standard_output():
    r = run_cli(["export", str(SIGMOID), "--csv", "-"], timeout=60)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 73 and rows[-1][7] == "fc6"
    assert "72 rows" in r.stderr and "-> standard output" in r.stderr and not os.path.exists(ROOT / "-")


def test_csv_dash_with_standard_output_closed_or_broken(tmp_path):
    cmd = [sys.executable, "-m", "vgtui", "export", str(SIGMOID), "--csv", "-"]
    closed = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT,
                            preexec_fn=lambda: os.close(1))  # `>&-`
    assert closed.returncode == 141 and closed.stderr == (
        "vgtui: error: --csv -: standard output is closed; name a file to write instead\n")
    r, w = os.pipe()
    os.close(r)  # `| head -0`: the reader is gone before the first write
    broken = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT)
    os.close(w)
    assert broken.returncode == 141 and broken.stderr == "", broken.stderr  # no traceback, no "Exception ignored"


def test_standard_error_closed_still_writes(tmp_path):
    """`2>&-`: nothing can be said, and the CSV is written all the same (exit 0), to a file or standard output."""
    out = tmp_path / "out.csv"
    r = subprocess.run([sys.executable, "-m", "vgtui", "export", str(SIGMOID), "--csv", str(out)], cwd=ROOT,
                       stdout=subprocess.PIPE, text=True, timeout=60, preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and r.stdout == "" and len(list(csv.reader(open(out)))) == 73
    r = subprocess.run([sys.executable, "-m", "vgtui", "export", str(SIGMOID), "--csv", "-"], cwd=ROOT,
                       stdout=subprocess.PIPE, text=True, timeout=60, preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and len(list(csv.reader(io.StringIO(r.stdout)))) == 73  # no message in the CSV


def test_a_fifo_as_input_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "run.jsonl"
    os.mkfifo(fifo)
    r = run_cli(["export", str(fifo), "--csv", str(tmp_path / "out.csv")], timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a FIFO (named pipe)" in r.stderr
    assert not (tmp_path / "out.csv").exists()


def test_damaged_snapshots_are_named_one_line_each_and_the_rest_written(tmp_path):
    """Line 3 with `layers` null, line 8 cut and ended with invalid UTF-8, line 13 with a layer named 5: three
    lines on standard error naming them, and the 9 good snapshots in the CSV (exit 0)."""
    lines = SIGMOID.read_bytes().splitlines(keepends=True)
    d = json.loads(lines[2])
    d["layers"] = None
    lines[2] = json.dumps(d, separators=(",", ":")).encode() + b"\n"
    lines[7] = lines[7][:-40] + b"\xff\xfe\n"
    lines[12] = lines[12].replace(b'"layers":[', b'"layers":[{"name":5},', 1)
    src = tmp_path / "run.jsonl"
    src.write_bytes(b"".join(lines))
    out = tmp_path / "out.csv"
    r = run_cli(["export", str(src), "--csv", str(out)], timeout=60)
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if line.startswith("vgtui export: skipped a damaged line: ")]
    named = [re.match(rf"vgtui export: skipped a damaged line: {re.escape(str(src))}: line (\d+)\b", s) for s in said]
    assert [m and m.group(1) for m in named] == ["3", "8", "13"], r.stderr
    assert "54 rows (9 snapshots x 6 layers" in r.stderr
    steps = sorted({int(row["step"]) for row in csv.DictReader(open(out))})
    assert steps == [10, 30, 40, 50, 70, 80, 90, 110, 120]


def test_the_library_never_replaces_and_never_follows(tmp_path):
    """vgtui.core.outfile, what export, `e`, ctrl+s and `vgtui data download` write through."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "a.svg").symlink_to(victim)
    (tmp_path / "a-2.svg").write_text("mine")
    from vgtui.core.outfile import numbered

    path, n = write_new(numbered(tmp_path / "a.svg"), lambda f: f.write(b"<svg/>"))
    assert (path, n) == (str(tmp_path / "a-3.svg"), 6) and open(path).read() == "<svg/>"
    assert victim.read_text() == "precious" and (tmp_path / "a-2.svg").read_text() == "mine"
    with pytest.raises(RefusedPath, match="is a symbolic link"):
        write_replacing(tmp_path / "a.svg", lambda f: f.write(b"x"))
    with pytest.raises(RefusedPath, match="is a directory"):
        write_replacing(tmp_path, lambda f: f.write(b"x"))

    def fails(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_replacing(tmp_path / "b.csv", fails)
    with pytest.raises(OSError):
        write_new([tmp_path / "c.csv"], fails)
    assert victim.read_text() == "precious" and not (tmp_path / "b.csv").exists()
    assert not (tmp_path / "c.csv").exists()
    no_temporary_left(tmp_path)


@pytest.mark.parametrize("at", ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte"])
def test_data_download_never_writes_through_a_link(tmp_path, mirror, capsys, at):  # noqa: F811
    """`vgtui data download` writes the same way: a link at a dataset file's name (the download, or the file
    unpacked from it) is refused in one line, and what it points to is untouched."""
    from vgtui.commands import data as datacmd

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (raw / at).symlink_to(victim)
    assert datacmd.main(["download", "mnist", "--data-dir", str(tmp_path / "data"), "--mirror", mirror]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"vgtui: error: cannot download mnist: {raw / at}: is a symbolic link; nothing is written "
                       "through a link (neither it nor what it points to is touched): name a regular file")
    assert victim.read_text() == "precious\n" and (raw / at).is_symlink()
    no_temporary_left(raw)
