"""`vgtui export FILE --tensorboard DIR`: every run of a metrics file as TensorBoard event files, read back with
TensorBoard's own reader (EventAccumulator, from the `tensorboard` package, not vgtui's writer) and compared with
the metrics file: scalars to float32, histogram bucket limits and counts exactly."""

import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_cli
from vgtui.core.metrics import MetricsIndex
from vgtui.core.records import LayerStats, RecordEncoder

# the test extra installs both (pyproject.toml): a missing one fails here, loudly, rather than skipping
import google_crc32c  # noqa: F401
from tensorboard.backend.event_processing import event_accumulator

FIXTURES = ROOT / "tests" / "ui" / "fixtures"
DBL_MAX = np.finfo(np.float64).max
HISTS = {"grad_hist": "grad_hist_log10_abs", "act_hist": "act_hist", "deriv_hist": "deriv_hist"}


def read_back(folder):
    """TensorBoard's reader over one run's folder: everything kept (size_guidance 0)."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def f32_equal(got: float, want: float) -> bool:
    w = float(np.float32(want))
    return got == w or (math.isnan(got) and math.isnan(w))


def check_run_against(folder, run, parts=None, skipped=()) -> int:
    """Every scalar and histogram of `run` (a RunIndex) is in the event file of `folder`, at its step, and nothing
    else is: returns the snapshots compared. `parts` maps a layer name to its tag part (default: the name)."""
    acc = read_back(folder)
    tags = acc.Tags()
    parts = parts or {}
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    hists = {t: {e.step: e.histogram_value for e in acc.Histograms(t)} for t in tags["histograms"]}
    want_scalars: dict[str, dict[int, float]] = {}
    want_hists: dict[str, dict[int, object]] = {}
    n = 0
    for i in range(run.n_snapshots):
        if i in skipped:
            continue
        snap = run.snapshot(i)
        n += 1
        for tag, v in (("train/loss", snap.loss), ("train/loss_avg", snap.loss_avg),
                       ("train/steps_per_s", snap.steps_per_s),
                       *((f"metrics/{k.replace('/', '.')}", v) for k, v in (snap.metrics or {}).items())):
            want_scalars.setdefault(tag, {})[snap.step] = v
        for layer in snap.layers:
            base = f"layers/{parts.get(layer.name, layer.name)}/"
            for k in LayerStats._FLOATS:
                if getattr(layer, k) is not None:
                    want_scalars.setdefault(base + k, {})[snap.step] = getattr(layer, k)
            for attr, tag in HISTS.items():
                if getattr(layer, attr, None) is not None:
                    want_hists.setdefault(base + tag, {})[snap.step] = getattr(layer, attr)
    for rec in run.epochs:
        for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
            want_scalars.setdefault(f"epoch/{k}", {})[rec.step] = getattr(rec, k)
    assert set(scalars) == set(want_scalars)
    assert set(hists) == set(want_hists)
    for tag, by_step in want_scalars.items():
        assert set(scalars[tag]) == set(by_step), tag
        for step, v in by_step.items():
            assert f32_equal(scalars[tag][step], v), (tag, step, scalars[tag][step], v)
    for tag, by_step in want_hists.items():
        assert set(hists[tag]) == set(by_step), tag
        for step, h in by_step.items():
            got = hists[tag][step]
            # the real edges, then DBL_MAX for the bucket over the range; first bucket: under the range (+ zeros)
            assert list(got.bucket_limit) == [*map(float, h.edges), DBL_MAX], (tag, step)
            assert list(got.bucket) == [h.under + h.zeros, *map(float, h.counts), h.over], (tag, step)
            assert got.num == h.total
            # TensorBoard draws from min to max: the outer edges of the first and last non-empty buckets
            filled = [i for i, c in enumerate(h.counts) if c]
            width = (h.edges[1] - h.edges[0], h.edges[-1] - h.edges[-2])
            if h.under + h.zeros:
                assert got.min == h.edges[0] - width[0]
            elif filled:
                assert got.min == h.edges[filled[0]]
            if h.over:
                assert got.max == h.edges[-1] + width[1]
            elif filled:
                assert got.max == h.edges[filled[-1] + 1]
    return n


@pytest.mark.parametrize("name", ["sigmoid-why.jsonl", "resnet18-why.jsonl", "relu-diverged.jsonl"])
def test_a_recorded_run_reads_back_equal(tmp_path, name):
    """Real runs: the sigmoid MLP (epochs, derivative histograms), a resnet18 through vgtui.watch (its own
    metrics, conv layers named layer1.0.conv1, exact zeros and values over the range), a ReLU net that diverged
    (non-finite numbers)."""
    out = tmp_path / "tb"
    r = run_cli(["export", str(FIXTURES / name), "--tensorboard", str(out)])
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["run-1"]
    (event_file,) = os.listdir(out / "run-1")
    assert event_file.startswith("events.out.tfevents.")
    (run,) = MetricsIndex(FIXTURES / name).runs
    assert f"run-1 ({run.n_snapshots} snapshots) -> {out}" in r.stderr
    assert check_run_against(out / "run-1", run) == run.n_snapshots
    acc = read_back(out / "run-1")
    if "-why" in name:  # written with the derivative probe
        assert any(t.endswith("/deriv_mean") for t in acc.Tags()["scalars"])
        assert any(t.endswith("/deriv_hist") for t in acc.Tags()["histograms"])
    if run.epochs:
        assert len(acc.Scalars("epoch/test_acc")) == len(run.epochs)
    if run.header.started:  # wall time: the run's start plus each snapshot's elapsed seconds
        first = acc.Scalars("train/loss")[0]
        assert first.wall_time == pytest.approx(1767225600.0 + run.snapshot(0).elapsed_s)


def test_a_fresh_training_run_reads_back_equal(tmp_path):
    """The trainer on mnist-5k for 40 steps (a snapshot every 5), then its export: every number equal, the points'
    wall times the run's start plus their elapsed seconds."""
    src, out = tmp_path / "run.jsonl", tmp_path / "tb"
    r = run_cli(["--headless", "--dataset", "mnist-5k", "--depth", "3", "--width", "64", "--max-steps", "40",
                 "--probe-every", "5", "--metrics", str(src)], timeout=180)
    assert r.returncode == 0, r.stderr
    r = run_cli(["export", str(src), "--tensorboard", str(out)])
    assert r.returncode == 0, r.stderr
    (run,) = MetricsIndex(src).runs
    assert run.n_snapshots >= 8 and run.epochs
    assert check_run_against(out / "run-1", run) == run.n_snapshots
    start = datetime.datetime.fromisoformat(run.header.started).timestamp()
    points = read_back(out / "run-1").Scalars("layers/fc1/grad_norm")
    assert [p.wall_time for p in points] == pytest.approx([start + s.elapsed_s for s in run.iter_snapshots()])


def test_two_runs_and_a_fork_each_in_its_folder(tmp_path):
    """A file of two runs (a restart), the second forked in the UI: run-1, run-2 and run-2-B, each equal."""
    src = tmp_path / "two.jsonl"
    src.write_bytes((FIXTURES / "sigmoid.jsonl").read_bytes() + (FIXTURES / "forked.jsonl").read_bytes())
    out = tmp_path / "tb"
    r = run_cli(["export", str(src), "--tensorboard", str(out)])
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["run-1", "run-2", "run-2-B"]
    assert "run-1 (12 snapshots), run-2 (13 snapshots), run-2-B (8 snapshots)" in r.stderr
    index = MetricsIndex(src)
    (fork,) = index.runs[1].branches
    assert check_run_against(out / "run-1", index.runs[0]) == 12
    assert check_run_against(out / "run-2", index.runs[1]) == 13
    assert check_run_against(out / "run-2-B", fork) == 8
    steps = [e.step for e in read_back(out / "run-2-B").Scalars("train/loss")]
    assert steps[0] > fork.header.forked_at - 1 and steps == sorted(steps)  # the fork goes on from its step


def hostile_file(tmp_path):
    """The sigmoid run with its layers renamed: a `/`, a name that `/` made `.` collides with, an escape sequence,
    Rich markup, HTML; user metrics with a `/`; a nan loss and infinite layer numbers; line 4's `layers` null (a
    damaged snapshot)."""
    (run,) = MetricsIndex(FIXTURES / "sigmoid.jsonl").runs
    names = ["a/b", "a.b", "\x1b[31mred\x1b[0m", "[bold]x[/bold]", "<b>fc5</b>", "fc6"]
    rename = dict(zip(run.header.layer_names, names))
    header = dataclasses.replace(run.header, layers=tuple(dataclasses.replace(li, name=rename[li.name])
                                                          for li in run.header.layers))
    enc = RecordEncoder()
    lines = [enc.line(header)]
    for i, snap in enumerate(run.iter_snapshots()):
        snap = dataclasses.replace(snap, metrics={"lr": 0.1 * (i + 1), "val/acc": 0.5},
                                   layers=tuple(dataclasses.replace(x, name=rename[x.name]) for x in snap.layers))
        if i == 5:  # non-finite numbers are written as they are
            snap = dataclasses.replace(snap, loss=math.nan, layers=(
                dataclasses.replace(snap.layers[0], grad_norm=math.inf, act_mean=-math.inf), *snap.layers[1:]))
        lines.append(enc.line(snap))
    d = json.loads(lines[3])
    d["layers"] = None
    lines[3] = json.dumps(d, separators=(",", ":")) + "\n"
    src = tmp_path / "hostile.jsonl"
    src.write_text("".join(lines))
    return src


def test_hostile_names_and_a_damaged_line(tmp_path):
    src = hostile_file(tmp_path)
    out = tmp_path / "tb"
    r = run_cli(["export", str(src), "--tensorboard", str(out)])
    assert r.returncode == 0, r.stderr
    said = [s for s in r.stderr.splitlines() if s.startswith("vgtui export: skipped a damaged line: ")]
    assert len(said) == 1 and re.search(r": line 4\b", said[0]), r.stderr
    assert "run-1 (11 snapshots, 1 damaged skipped)" in r.stderr
    (run,) = MetricsIndex(src).runs
    parts = {name: name.replace("/", ".") for name in run.header.layer_names}  # a `/` made `.`, and then
    parts["a.b"] = "a.b~2"  # the name it collides with, numbered
    assert check_run_against(out / "run-1", run, parts=parts, skipped={2}) == 11
    tags = read_back(out / "run-1").Tags()
    every = tags["scalars"] + tags["histograms"]
    assert not [t for t in every if re.search(r"[\x00-\x1f\x7f-\x9f]", t)]  # no control character in any tag
    acc = read_back(out / "run-1")
    step = run.snapshot(5).step
    assert [math.isnan(e.value) for e in acc.Scalars("train/loss") if e.step == step] == [True]
    assert [e.value for e in acc.Scalars("layers/a.b/grad_norm") if e.step == step] == [math.inf]
    assert [e.value for e in acc.Scalars("layers/a.b/act_mean") if e.step == step] == [-math.inf]
    assert {"layers/a.b/grad_norm", "layers/a.b~2/grad_norm", "layers/\\x1b[31mred\\x1b[0m/grad_norm",
            "layers/[bold]x[.bold]/grad_norm", "layers/<b>fc5<.b>/grad_norm", "metrics/val.acc",
            "metrics/lr"} <= set(every)


def digest(folder) -> dict:
    return {p: hashlib.sha256(open(os.path.join(r, p), "rb").read()).hexdigest()
            for r, _, fs in os.walk(folder) for p in fs}


def refused(r, said: str) -> None:
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and said in r.stderr, r.stderr


def test_refusals_leave_everything_as_it_was(tmp_path):
    src = FIXTURES / "sigmoid.jsonl"
    out = tmp_path / "tb"
    assert run_cli(["export", str(src), "--tensorboard", str(out)]).returncode == 0
    before = digest(out)
    # a folder holding event files already: nothing is written over them
    refused(run_cli(["export", str(src), "--tensorboard", str(out)]), "holds TensorBoard event files already")
    # a link to a folder: nothing through it
    (tmp_path / "link").symlink_to(out)
    refused(run_cli(["export", str(src), "--tensorboard", str(tmp_path / "link")]), "is a symbolic link")
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "to-empty").symlink_to(empty)
    refused(run_cli(["export", str(src), "--tensorboard", str(tmp_path / "to-empty")]), "is a symbolic link")
    assert os.listdir(empty) == []
    # a regular file, the metrics file, a missing parent
    refused(run_cli(["export", str(src), "--tensorboard", str(src)]), "is a regular file, not a folder")
    refused(run_cli(["export", str(src), "--tensorboard", str(tmp_path / "no" / "tb")]), "does not exist")
    # --run/--branch choose one run for --csv; every run is written here
    refused(run_cli(["export", str(src), "--tensorboard", str(empty), "--run", "1"]), "--tensorboard writes every")
    assert digest(out) == before and os.listdir(empty) == []
    # a folder of the name a run would take, without event files: refused, kept, and no temporary folder left
    (empty / "run-1").mkdir()
    (empty / "run-1" / "mine.txt").write_text("mine")
    refused(run_cli(["export", str(src), "--tensorboard", str(empty)]), "run-1: exists already")
    assert os.listdir(empty) == ["run-1"] and os.listdir(empty / "run-1") == ["mine.txt"]
    os.remove(empty / "run-1" / "mine.txt")
    os.rmdir(empty / "run-1")
    # an existing empty folder (not a link) takes the export; what else it holds stays
    (empty / "notes.txt").write_text("mine")
    assert run_cli(["export", str(src), "--tensorboard", str(empty)]).returncode == 0
    assert sorted(os.listdir(empty)) == ["notes.txt", "run-1"] and (empty / "notes.txt").read_text() == "mine"


def test_without_the_extra_one_line_names_the_pip_command(tmp_path):
    """google-crc32c absent (a module of that name that fails to import stands in for it): exit 2, one line, and
    nothing created."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "google_crc32c.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT)])}
    out = tmp_path / "tb"
    r = subprocess.run([sys.executable, "-m", "vgtui", "export", str(FIXTURES / "sigmoid.jsonl"), "--tensorboard",
                        str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    refused(r, "pip install 'vgtui[tensorboard]'")
    assert not out.exists()


def test_import_and_help_stay_light():
    """Neither `import vgtui` nor `vgtui export --help` loads the writer or its checksum library."""
    code = ("import sys, contextlib, io, vgtui\n"
            "from vgtui.commands import export\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f, contextlib.suppress(SystemExit):\n"
            "    export.main(['--help'])\n"
            "assert '--tensorboard DIR' in f.getvalue()\n"
            "print(sorted(m for m in sys.modules if 'crc32c' in m or 'tbfile' in m or m.startswith('tensorboard')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
