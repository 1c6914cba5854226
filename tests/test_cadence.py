"""The snapshot cadence (bounded in steps and in time) and the progress records between snapshots, under a fake
clock that advances a fixed time per step: the trainer's timing decisions, made deterministic."""

import pytest

from vgtui.core.config import DEFAULT_PROBE_EVERY, PROBE_MIN_INTERVAL_S
from vgtui.core.metrics import iter_records
from vgtui.core.records import EpochRecord, ProgressRecord, RunRecord, Snapshot
from vgtui.core.writer import MetricsWriter
from vgtui.engine.trainer import Trainer, progress_at_most


class FakeClock:
    """Time moves only when a step ends, by `per_step` seconds."""

    def __init__(self, per_step: float):
        self.t, self.per_step = 0.0, per_step

    def __call__(self) -> float:
        return self.t

    def on_step(self, trainer) -> None:
        self.t += self.per_step


def run(digits, cfg, per_step, sinks=()):
    clock, recs = FakeClock(per_step), []
    end = Trainer(cfg, [recs.append, *sinks], data=digits, clock=clock, on_step=clock.on_step).run()
    assert end.status == "completed"
    return recs


@pytest.fixture
def long_epochs(small):
    """400 steps an epoch (batch 10), so epoch ends do not hide the periodic snapshots."""
    return small.replace(batch_size=10, max_steps=1000, epochs=3, probe_every=None)


def snap_steps(recs):
    return [r.step for r in recs if isinstance(r, Snapshot)]


def test_automatic_cadence_is_bounded_in_time_on_a_fast_device(digits, long_epochs):
    recs = run(digits, long_epochs.replace(max_steps=450), per_step=1 / 256)  # 256 steps a second
    header = recs[0]
    assert isinstance(header, RunRecord)
    assert (header.probe_every, header.probe_min_interval_s) == (DEFAULT_PROBE_EVERY, PROBE_MIN_INTERVAL_S)
    # step 1 (the first numbers at once), then 0.25 s = 64 steps after the previous snapshot (not every 40 steps:
    # at most 4 a second), and the epoch ends (400, and 450 where --max-steps cuts the second epoch)
    assert snap_steps(recs) == [1, 65, 129, 193, 257, 321, 385, 400, 450]
    times = [r.elapsed_s for r in recs if isinstance(r, Snapshot)]
    assert times[:3] == [0.0, 0.25, 0.5]


def test_automatic_cadence_is_every_40_steps_on_a_slow_device(digits, long_epochs):
    recs = run(digits, long_epochs.replace(max_steps=120), per_step=0.05)  # 20 steps a second, as a CPU
    assert snap_steps(recs) == [1, 40, 80, 120]


def test_explicit_probe_every_is_exact_whatever_the_speed(digits, long_epochs):
    recs = run(digits, long_epochs.replace(probe_every=40, max_steps=120), per_step=0.0001)
    assert snap_steps(recs) == [1, 40, 80, 120]
    assert recs[0].probe_every == 40 and recs[0].probe_min_interval_s is None


def test_progress_records_between_snapshots(digits, long_epochs, tmp_path):
    path = tmp_path / "m.jsonl"
    writer = MetricsWriter(path)
    recs = run(digits, long_epochs.replace(probe_every=100, max_steps=289), per_step=1 / 64,
               sinks=[progress_at_most(writer.write)])  # 64 steps a second (a binary fraction: exact times)
    writer.close()
    progress = [r for r in recs if isinstance(r, ProgressRecord)]
    # one every 0.25 s = 16 steps (the fake clock has moved k - 1 steps' time when step k ends): six between two
    # snapshots 100 steps apart
    assert [p.step for p in progress] == list(range(17, 290, 16))
    assert [p.step for p in progress if 100 < p.step < 200] == [113, 129, 145, 161, 177, 193]
    assert snap_steps(recs) == [1, 100, 200, 289]
    assert progress[0].steps_per_s == pytest.approx(68.0)  # 17 steps in 0.25 s
    assert all(p.steps_per_s == pytest.approx(64.0) for p in progress[1:])
    assert [p.epoch for p in progress] == [1] * len(progress)
    # the loss of a progress record is the mean since the previous one: weighted, they make the epoch's mean
    epoch = next(r for r in recs if isinstance(r, EpochRecord))
    weighted = (17 * progress[0].loss + 16 * sum(p.loss for p in progress[1:])) / 289
    assert epoch.train_loss == pytest.approx(weighted, rel=1e-12) and 2.0 < epoch.train_loss < 2.5
    # the metrics file keeps at most one a second
    in_file = [r for r in iter_records(path) if isinstance(r, ProgressRecord)]
    assert [(p.step, p.elapsed_s) for p in in_file] == [(17, 0.25), (81, 1.25), (145, 2.25), (209, 3.25),
                                                         (273, 4.25)]
    assert len(path.read_text().splitlines()) == len(recs) - len(progress) + len(in_file)


def test_headless_progress_line_moves_between_snapshots(digits, long_epochs):
    """On a terminal, the headless progress line is redrawn from the progress records, not only at snapshots."""
    import io

    from vgtui.commands.headless import Reporter

    out = io.StringIO()
    reporter = Reporter(out, tty=True)
    recs = run(digits, long_epochs.replace(probe_every=100, max_steps=120), per_step=1 / 64)
    for rec in recs:
        reporter._drawn = -1e9  # no 5-a-second limit: every progress record draws
        reporter(rec)
    # --max-steps 120 of an epoch of 400: the run trains one epoch, of 120 steps (not "epoch 1/3", not "/400")
    frames = [f for f in out.getvalue().split("\r\033[K") if f.startswith("epoch 1/1 ") and "/120" in f]
    assert [f.split()[3] for f in frames] == [f"{s}/120" for s in range(17, 120, 16)]
    assert all("steps/s" in f and "loss 2." in f for f in frames)
