"""The fork: branch B, an exact copy of the running run, trained in lockstep with it on the same batches (one
trainer, real torch); what a change to B does to A (nothing); restarting a fork; ending it; and the metrics file
that records both branches."""

from __future__ import annotations

import json

import numpy as np

from vgtui.core.config import RunConfig
from vgtui.core.metrics import MetricsIndex, read_metrics
from vgtui.core.records import (EndRecord, EventRecord, Fork, Restart, RunRecord, SetActivation,
                                SetLR, Snapshot)
from vgtui.core.writer import MetricsWriter
from vgtui.engine.trainer import Trainer

CFG = RunConfig(dataset="mnist-5k", depth=3, width=64, epochs=1, probe_every=5, max_steps=40)


def run_with(script: dict[int, object], cfg: RunConfig = CFG, sinks=()) -> list:
    """Train `cfg`, sending script[n] before the step after the n-th; returns every record."""
    recs: list = []
    t = Trainer(cfg, sinks=[recs.append, *sinks])
    done = {"n": 0}

    def on_step(tr: Trainer) -> None:
        done["n"] += 1
        for cmd in (script.get(done["n"]) or ()):
            tr.send(cmd)

    t.on_step = on_step
    t.run()
    return recs


def snaps(recs, branch=None) -> dict[int, Snapshot]:
    return {r.step: r for r in recs if isinstance(r, Snapshot) and r.branch == branch}


def same(a: Snapshot, b: Snapshot) -> bool:
    return a.loss == b.loss and all(x.grad_norm == y.grad_norm and x.act_mean == y.act_mean
                                    and x.update_data_ratio == y.update_data_ratio for x, y in zip(a.layers, b.layers))


def test_b_is_an_exact_copy_in_lockstep_and_a_change_to_b_leaves_a_alone():
    plain = snaps(run_with({}))
    recs = run_with({10: [Fork(True)], 20: [SetActivation("tanh", branch="B"), SetLR(0.05, branch="B")]})
    a, b = snaps(recs), snaps(recs, "B")
    (head_b,) = [r for r in recs if isinstance(r, RunRecord) and r.branch == "B"]
    assert head_b.forked_at == 10 and head_b.layer_names == ("fc1", "fc2", "fc3", "fc4")
    assert sorted(b) == [15, 20, 25, 30, 35, 40]  # probed at A's steps, from the fork on
    assert sorted(a) == sorted(plain) == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    # A trains exactly as it would without the fork, whatever happens to B
    assert all(same(a[s], plain[s]) for s in plain)
    # before the change B is A, number for number (the same weights, optimiser state and batches)
    assert same(b[15], a[15]) and same(b[20], a[20])
    # after it, only B changed: its activation, its learning rate
    assert b[25].activation == "tanh" and a[25].activation == "sigmoid"
    assert not same(b[25], a[25]) and b[25].layers[0].grad_norm > 10 * a[25].layers[0].grad_norm
    events_b = [r.set for r in recs if isinstance(r, EventRecord) and r.branch == "B"]
    assert events_b == [{"activation": "tanh"}, {"lr": 0.05}]
    ends = {r.branch: r for r in recs if isinstance(r, EndRecord)}
    assert ends["B"].status == ends[None].status == "completed" and ends["B"].steps == ends[None].steps == 40


def test_an_architectural_change_restarts_a_and_b_from_the_same_seed():
    plain = snaps(run_with({}))
    recs = run_with({10: [Fork(True)], 12: [Restart(CFG.replace(batchnorm=True).to_dict(), branch="B")]})
    headers = [(r.branch, r.forked_at) for r in recs if isinstance(r, RunRecord)]
    assert headers == [(None, None), ("B", 10), (None, None), ("B", 0)]
    ends = [(r.branch, r.status, r.steps) for r in recs if isinstance(r, EndRecord)]
    assert ends[:2] == [("B", "interrupted", 12), (None, "interrupted", 12)]
    assert "restarted A and B from fresh weights (seed 0): B = sigmoid + batchnorm" in recs[
        recs.index(next(r for r in recs if isinstance(r, EndRecord)))].message
    second = recs[[i for i, r in enumerate(recs) if isinstance(r, RunRecord)][2]:]
    a, b = snaps(second), snaps(second, "B")
    assert sorted(a) == sorted(b) == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert all(same(a[s], plain[s]) for s in plain)  # A from fresh weights: the same run as before
    (head_b,) = [r for r in second if isinstance(r, RunRecord) and r.branch == "B"]
    assert RunConfig.from_dict(head_b.config).batchnorm and not RunConfig.from_dict(second[0].config).batchnorm
    assert b[1].layers[0].grad_norm > 10 * a[1].layers[0].grad_norm  # batchnorm lets the gradient through


def test_ending_the_fork_keeps_a_or_b():
    recs = run_with({10: [Fork(True)], 15: [SetActivation("relu", branch="B")], 20: [Fork(False, keep="A")]})
    assert max(snaps(recs, "B")) == 20 and max(snaps(recs)) == 40
    end_b = next(r for r in recs if isinstance(r, EndRecord) and r.branch == "B")
    assert end_b.status == "interrupted" and end_b.message == "the fork ended at step 20: A was kept"
    assert [r.set["fork"] for r in recs if isinstance(r, EventRecord) and "fork" in r.set] == [
        "B forked at step 10", "ended, A kept"]

    recs = run_with({10: [Fork(True)], 15: [SetActivation("relu", branch="B")], 20: [Fork(False, keep="B")]})
    headers = [r for r in recs if isinstance(r, RunRecord)]
    assert [(h.branch, h.forked_at) for h in headers] == [(None, None), ("B", 10), (None, 20)]
    b_before = snaps(recs, "B")[20]
    after = [r for r in recs[recs.index(headers[2]):] if isinstance(r, Snapshot)]
    assert all(s.branch is None and s.activation == "relu" for s in after) and after[0].step == 25
    assert RunConfig.from_dict(headers[2].config).activation == "relu"
    # the run goes on from B's state: B's loss level, not A's
    assert abs(after[0].loss - b_before.loss) < abs(after[0].loss - snaps(recs)[20].loss) + 0.5
    ends = [(r.branch, r.status) for r in recs if isinstance(r, EndRecord)]
    assert ends == [(None, "interrupted"), ("B", "completed"), (None, "completed")]


def test_the_metrics_file_records_both_branches(tmp_path):
    path = tmp_path / "fork.jsonl"
    with MetricsWriter(path) as w:
        recs = run_with({10: [Fork(True)], 20: [SetActivation("tanh", branch="B")]}, sinks=[w.write])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    b_lines = [d for d in lines if "branch" in d]
    assert b_lines and all(list(d)[:2] == ["type", "branch"] and d["branch"] == "B" for d in b_lines)
    assert {d["type"] for d in b_lines} >= {"run", "snapshot", "event", "epoch", "end"}
    assert lines[0]["schema"] == 3
    (run,) = read_metrics(path)
    (branch,) = run.branches
    assert branch.header.forked_at == 10 and branch.header.branch == "B"
    assert [s.step for s in branch.snapshots] == [15, 20, 25, 30, 35, 40]
    assert [s.step for s in run.snapshots] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert all(s.branch is None for s in run.snapshots) and all(s.branch == "B" for s in branch.snapshots)
    assert branch.events[0].set == {"activation": "tanh"} and branch.end.status == "completed"
    assert [e.set for e in run.events] == [{"fork": "B forked at step 10"}]
    # read back as written: the same float32 numbers (the file keeps a float32 in its shortest form)
    written = snaps(recs, "B")
    f32 = np.float32
    assert all(f32(written[s.step].loss) == f32(s.loss) and all(
        f32(x.grad_norm) == f32(y.grad_norm) and (x.act_mean is y.act_mean is None or f32(x.act_mean) == f32(y.act_mean))
        for x, y in zip(written[s.step].layers, s.layers)) for s in branch.snapshots)
    with MetricsIndex(path) as index:
        (r,) = index.runs
        assert r.n_snapshots == 9 and r.branches[0].n_snapshots == 6 and r.branches[0].parent is r
        assert list(r.branches[0].snapshot_steps) == [15, 20, 25, 30, 35, 40]
        assert r.branches[0].snapshot(-1).branch == "B"


def test_a_branch_record_without_its_header_is_damage(tmp_path):
    path = tmp_path / "bad.jsonl"
    with MetricsWriter(path) as w:
        run_with({}, cfg=CFG.replace(max_steps=5), sinks=[w.write])
    lines = path.read_text().splitlines()
    snap = json.loads(lines[1])
    lines.insert(2, json.dumps({"type": "snapshot", "branch": "B", **{k: v for k, v in snap.items() if k != "type"}}))
    path.write_text("\n".join(lines) + "\n")
    with MetricsIndex(path) as index:  # skipped, with a notice naming it
        assert index.notices == ["line 3: a record of branch B before that branch's run header"]
        assert not index.runs[0].branches and index.runs[0].n_snapshots == len(read_metrics(path)[0].snapshots)



def test_a_file_with_a_fork_in_an_earlier_run_reads_back(tmp_path):
    """Snapshots of a branch are parsed on demand, after later run headers were read: they use their own header."""
    path = tmp_path / "kept.jsonl"
    with MetricsWriter(path) as w:
        run_with({10: [Fork(True)], 15: [Restart(CFG.replace(skip=True).to_dict(), branch="B")],
                  25: [Fork(False, keep="B")]}, sinks=[w.write])
    first, second, third = read_metrics(path)  # the fork restarted; then B kept: the run goes on from it
    assert [s.step for s in first.branches[0].snapshots] == [15]
    assert first.branches[0].end.message.startswith("restarted A and B")
    assert [s.step for s in second.branches[0].snapshots] == [1, 5, 10]  # the 25th step done is step 10 here
    assert third.header.forked_at == 10 and not third.branches and third.snapshots[0].step == 15
    with MetricsIndex(path) as index:
        assert index.runs[0].branches[0].snapshot(0).step == 15  # read after the whole file was indexed
