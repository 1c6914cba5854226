"""The fork of up to four branches (A + B, C, D; issue 17): every branch trains in lockstep with the run on the same
batches; A with three branches beside it is, number for number, the run that was never forked; each branch is A,
number for number, until its own change; a fork with a change (activation: weights kept; network: fresh weights
from the run's seed); a fifth network refused; one branch dropped; a restart of the fork restarts every branch;
the metrics file holds all four. Real torch on the embedded digits (tests/test_fork.py's small network)."""

from __future__ import annotations

from vgtui.core.config import RunConfig
from vgtui.core.metrics import MetricsIndex, read_metrics
from vgtui.core.records import (EndRecord, EventRecord, Fork, NoticeRecord, Restart, RunRecord, SetActivation, SetLR,
                                Stop)
from vgtui.core.writer import MetricsWriter
from vgtui.engine.trainer import Trainer
from test_fork import CFG, run_with, same, snaps

RELU = CFG.replace(activation="relu").to_dict()
BN = CFG.replace(batchnorm=True).to_dict()


def forks(recs) -> list[str]:
    return [r.set["fork"] for r in recs if isinstance(r, EventRecord) and "fork" in r.set]


def test_a_with_three_branches_is_the_unforked_run_and_each_branch_is_a_until_its_change():
    plain = snaps(run_with({}))
    recs = run_with({10: [Fork(True), Fork(True), Fork(True)], 20: [SetActivation("relu", branch="C")],
                     30: [SetLR(0.05, branch="D")]})
    a, b, c, d = snaps(recs), snaps(recs, "B"), snaps(recs, "C"), snaps(recs, "D")
    heads = [(r.branch, r.forked_at) for r in recs if isinstance(r, RunRecord)]
    assert heads == [(None, None), ("B", 10), ("C", 10), ("D", 10)]
    assert sorted(a) == sorted(plain) == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert sorted(b) == sorted(c) == sorted(d) == [15, 20, 25, 30, 35, 40]  # probed at A's steps from the fork
    # A trains exactly as it would alone, whatever its three branches do
    assert all(same(a[s], plain[s]) for s in plain) and [a[s].loss for s in a] == [plain[s].loss for s in a]
    # B never changes: A throughout; C is A until step 20, D until step 30, and differ after
    assert all(same(b[s], a[s]) for s in b)
    assert same(c[15], a[15]) and same(c[20], a[20]) and not same(c[25], a[25]) and c[25].activation == "relu"
    assert all(same(d[s], a[s]) for s in (15, 20, 25, 30)) and not same(d[35], a[35])
    assert not same(d[35], c[35])  # their own changes: the branches differ from each other too
    ends = {r.branch: r.status for r in recs if isinstance(r, EndRecord)}
    assert ends == {"B": "completed", "C": "completed", "D": "completed", None: "completed"}


def test_a_fork_with_a_change_is_the_copy_changed_at_the_fork_and_a_fifth_network_is_refused():
    # activation at the fork: the copy of A with its activation changed at once (the same numbers as a fork then a
    # change before the next step); a network change: fresh weights
    by_hand = run_with({10: [Fork(True), SetActivation("relu", branch="B")]})
    recs = run_with({10: [Fork(True, config=RELU), Fork(True, config=BN, branch="D"), Fork(True),
                          Fork(True), Fork(True, config=RELU)]})
    b, by_hand_b = snaps(recs, "B"), snaps(by_hand, "B")
    assert sorted(b) == sorted(by_hand_b) and all(same(b[s], by_hand_b[s]) for s in b)
    heads = {r.branch: r for r in recs if isinstance(r, RunRecord)}
    assert sorted(heads, key=str) == ["B", "C", "D", None]  # the id asked for (D), then the next free (C)
    assert RunConfig.from_dict(heads["B"].config).activation == "relu"
    assert RunConfig.from_dict(heads["D"].config).batchnorm and heads["D"].forked_at == 10
    assert forks(recs) == ["B forked at step 10 (relu)", "D forked at step 10 (sigmoid + batchnorm, fresh weights)",
                           "C forked at step 10"]
    notices = [r.message for r in recs if isinstance(r, NoticeRecord)]
    assert len(notices) == 2 and all(n.startswith("fork refused: the run has 3 branches beside A") for n in notices)
    assert all(same(s, snaps(recs)[k]) for k, s in snaps(recs, "C").items())  # C: an exact copy of A
    # D's fresh network starts where an untrained one does: near chance, while A has learnt for 10 steps
    assert snaps(recs, "D")[15].layers[0].grad_norm > 10 * snaps(recs)[15].layers[0].grad_norm


def test_a_network_change_forked_at_step_0_is_the_run_a_restart_builds_and_refusals_change_nothing():
    alone = snaps(run_with({}, cfg=CFG.replace(batchnorm=True)))
    t = Trainer(CFG)
    recs: list = []
    t.sinks.append(recs.append)
    for cmd in (Fork(True, config=BN, branch="C"), Fork(True, branch="C"), Fork(True, branch="E"),
                Fork(True, config=CFG.replace(batch_size=50).to_dict()),
                Fork(True, config=CFG.replace(activation="nope").to_dict())):
        t.send(cmd)  # read before the first step
    t.run()
    c = snaps(recs, "C")
    assert sorted(c) == sorted(alone) and all(same(c[s], alone[s]) for s in alone)
    notices = [r.message for r in recs if isinstance(r, NoticeRecord)]
    assert notices[0] == "fork refused: branch 'C' is in the fork already"
    assert notices[1] == "fork refused: branch 'E' is none of B, C, D"
    assert "batch_size must be the run's (100, not 50)" in notices[2] and "activation" in notices[3]
    assert [r.branch for r in recs if isinstance(r, RunRecord)] == [None, "C"]


def test_dropping_one_branch_and_restarting_the_fork_after_its_end(tmp_path):
    path = tmp_path / "four.jsonl"
    recs: list = []
    script = {5: [Fork(True), Fork(True, config=RELU), Fork(True, config=BN)], 15: [Fork(False, branch="C")],
              40: [Restart(CFG.replace(skip=True).to_dict(), branch="D")], 50: [Stop()]}
    n = {"done": 0}

    def on_step(tr: Trainer) -> None:
        n["done"] += 1
        for cmd in script.get(n["done"], ()):
            tr.send(cmd)

    with MetricsWriter(path) as w:
        t = Trainer(CFG, sinks=[recs.append, w.write], hold=True, on_step=on_step)
        t.run()  # 40 steps; the restart is read after the run ended (hold): every branch it ended with starts again
    assert forks(recs)[3] == "C dropped at step 15"
    end_c = next(r for r in recs if isinstance(r, EndRecord) and r.branch == "C")
    assert end_c.steps == 15 and end_c.cause == "fork-ended" and max(snaps(recs, "C")) == 15
    first_end = next(i for i, r in enumerate(recs) if isinstance(r, EndRecord) and r.branch is None)
    second = recs[first_end + 1:]
    heads = [(r.branch, r.forked_at, RunConfig.from_dict(r.config).describe()) for r in second
             if isinstance(r, RunRecord)]
    assert heads == [(None, None, "sigmoid"), ("B", 0, "sigmoid"), ("D", 0, "sigmoid + skip")]
    a2, b2 = snaps(second), snaps(second, "B")
    assert sorted(a2) == sorted(b2) == [1, 5, 10] and all(same(a2[s], b2[s]) for s in a2)  # B: A from step 0
    runs = read_metrics(path)
    assert [[br.header.branch for br in r.branches] for r in runs] == [["B", "C", "D"], ["B", "D"]]
    assert [s.step for s in runs[0].branches[1].snapshots] == [10, 15]
    with MetricsIndex(path) as index:
        assert [len(r.branches) for r in index.runs] == [3, 2] and not index.notices


def test_a_trainer_killed_with_three_branches_gets_every_end_record_from_the_viewer(tmp_path):
    """The trainer dies (SIGKILL) forked into B, C, D with C dropped: the viewer ends B and D, then the run, as the
    trainer would, and the file reads back whole."""
    from test_faults import records, run_script

    m = tmp_path / "m.jsonl"
    run_script(tmp_path, f"""
from vgtui.core.records import Fork
b = ProcessBackend(CFG, {str(m)!r})
b.start()
b.send(SetSpeedCap(50))
until(b, lambda r: r.type == 'snapshot')
for _ in range(3):
    b.send(Fork(True))
b.send(Fork(False, branch='C'))
until(b, lambda r: r.type == 'snapshot' and r.branch == 'D')
os.kill(b.pid, signal.SIGKILL)
while b.alive:
    time.sleep(0.02)
print('written:', b.ensure_end('failed', b.death()).message)
b.close('quit')
""")
    recs = records(m)
    assert [(x["type"], x.get("branch")) for x in recs[-3:]] == [("end", "B"), ("end", "D"), ("end", None)]
    assert all("written by vgtui's viewer" in x["message"] for x in recs[-3:])
    (run,) = read_metrics(m)
    assert [(br.header.branch, br.end.status) for br in run.branches] == [("B", "failed"), ("C", "interrupted"),
                                                                          ("D", "failed")]


def test_a_restart_then_three_forks_in_a_row_make_four_runs_from_step_0():
    """A lesson's set-up (see Fork): Restart, then Fork with each branch's configuration, sent together: the trainer
    reads the forks before the new run's first step, so each branch is the run its configuration gives alone (the
    same seed, the same batches), number for number."""
    relu, bn = CFG.replace(activation="relu"), CFG.replace(batchnorm=True)
    alone = {"B": snaps(run_with({}, cfg=relu)), "C": snaps(run_with({}, cfg=bn))}
    plain = snaps(run_with({}))
    recs = run_with({7: [Restart(CFG.to_dict()), Fork(True, config=RELU), Fork(True, config=BN), Fork(True)]})
    second = recs[[i for i, r in enumerate(recs) if isinstance(r, RunRecord)][1]:]
    heads = [(r.branch, r.forked_at) for r in second if isinstance(r, RunRecord)]
    assert heads == [(None, None), ("B", 0), ("C", 0), ("D", 0)]
    for bid in ("B", "C"):
        got = snaps(second, bid)
        assert sorted(got) == sorted(alone[bid]) and all(same(got[s], alone[bid][s]) for s in got), bid
    a, d = snaps(second), snaps(second, "D")
    assert all(same(a[s], plain[s]) and same(d[s], plain[s]) for s in plain)
