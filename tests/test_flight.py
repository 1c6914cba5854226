"""The flight recorder (issue 18): the spike record and its JSON round trip, strict reading, old files, the words
for people; then real training with injected spikes (a layer's weights scaled, a corrupted batch) naming the layer
that led, and runs without one producing none."""

import json
import math

import numpy as np
import pytest

from vgtui.core.metrics import MetricsIndex, read_metrics
from vgtui.core.records import Lead, RecordEncoder, SpikeRecord, record_from_json, to_json
from vgtui.core.spikes import robust_scores, spike_words, spikes_summary


def a_spike(**kw) -> SpikeRecord:
    steps = tuple(range(95, 106))
    d = dict(step=100, kind="spike", score=12.25, steps=steps, loss=tuple(0.5 + 0.01 * i for i in range(11)),
             series={"grad_norm": {"fc1": tuple(0.1 * i for i in range(11)), "fc2": (float("nan"),) * 11},
                     "update_norm": {"fc1": (0.001,) * 11, "fc2": (float("inf"),) + (0.002,) * 10}},
             leaders=(Lead("fc2", "update_norm", 97, 3, 8.5), Lead("fc5", "grad_norm", 98, 2, 6.0)), elapsed_s=1.5)
    d.update(kw)
    return SpikeRecord(**d)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or np.float32(a) == np.float32(b)


def test_spike_record_round_trips_through_json():
    rec = a_spike(loss=tuple(np.float32(x).item() for x in np.linspace(0.1, 3.3, 11)))
    line = RecordEncoder().line(rec)
    d = json.loads(line)
    assert list(d)[:2] == ["type", "step"] and d["type"] == "spike" and d["leaders"][0] == {
        "layer": "fc2", "metric": "update_norm", "step": 97, "lead": 3, "score": 8.5}
    assert d["series"]["grad_norm"]["fc2"][0] == "nan" and d["series"]["update_norm"]["fc2"][0] == "inf"
    back = record_from_json(d)
    assert isinstance(back, SpikeRecord)
    assert (back.step, back.kind, back.score, back.steps, back.elapsed_s, back.branch) == \
           (rec.step, rec.kind, rec.score, rec.steps, rec.elapsed_s, None)
    assert np.array_equal(np.float32(back.loss), np.float32(rec.loss))  # float32 shortest form: the same float32
    assert back.series.keys() == rec.series.keys()
    for m in rec.series:
        assert back.series[m].keys() == rec.series[m].keys()
        for layer, v in rec.series[m].items():
            assert all(same(a, b) for a, b in zip(back.series[m][layer], v)), (m, layer)
    assert [(l.layer, l.metric, l.step, l.lead, l.score) for l in back.leaders] == \
           [(l.layer, l.metric, l.step, l.lead, l.score) for l in rec.leaders]
    b = record_from_json(to_json(a_spike(branch="B")))
    assert b.branch == "B" and list(to_json(a_spike(branch="B")))[:2] == ["type", "branch"]


@pytest.mark.parametrize("change, why", [
    (lambda d: d.update(kind="hiccup"), "kind 'hiccup' is not one of"),
    (lambda d: d.update(step=-1), "step is -1, outside"),
    (lambda d: d.update(step=94), "step 94 is not in the window"),
    (lambda d: d.update(steps=[95, 95] + d["steps"][2:]), "steps are not increasing"),
    (lambda d: d["loss"].pop(), "loss: 10 values for 11 steps"),
    (lambda d: d["series"]["grad_norm"]["fc1"].append(1.0), "series.grad_norm.fc1: 12 values"),
    (lambda d: d["series"]["grad_norm"].update(fc1="big"), "not a list"),
    (lambda d: d["leaders"][0].update(lead=4), "lead 4 is not step 100 - 97"),
    (lambda d: d["leaders"][0].update(layer=3), "not a string"),
    (lambda d: d.update(score="high"), "score is 'high', not a number"),
    (lambda d: d.update(elapsed_s="inf"), "not a finite number"),
    (lambda d: d.pop("steps"), "steps"),
])
def test_a_damaged_spike_record_is_refused_with_a_reason(change, why):
    d = json.loads(json.dumps(to_json(a_spike())))
    change(d)
    with pytest.raises((ValueError, KeyError)) as e:
        record_from_json(d)
    assert why in str(e.value)


def test_strings_of_a_spike_record_are_made_safe_to_show():
    d = to_json(a_spike())
    d["series"]["grad_norm"]["\x1b[31mevil"] = d["series"]["grad_norm"].pop("fc1")
    d["leaders"][0]["layer"] = "fc\u202e2"
    rec = record_from_json(json.loads(json.dumps(d)))
    assert "\\x1b[31mevil" in rec.series["grad_norm"] and rec.leaders[0].layer == "fc\\u202e2"
    assert "\x1b" not in spike_words(rec) and "\\u202e" in spike_words(rec)


def test_a_file_with_spikes_is_indexed_and_an_unreadable_spike_is_a_damaged_line(tmp_path):
    from vgtui.core.records import EndRecord, LayerInfo, RunRecord

    enc = RecordEncoder()
    header = RunRecord(layers=(LayerInfo("fc1", "Linear", "sigmoid"), LayerInfo("fc2", "Linear")), device="cpu",
                       version="0.1.0")
    bad = json.dumps({**to_json(a_spike()), "kind": "hiccup"}) + "\n"
    path = tmp_path / "spikes.jsonl"
    path.write_text(enc.line(header) + enc.line(a_spike()) + bad + enc.line(a_spike(step=103, leaders=()))
                    + enc.line(EndRecord("completed", 200, 2.0)))
    index = MetricsIndex(path)
    (run,) = index.runs
    assert [s.step for s in run.spikes] == [100, 103] and run.end.status == "completed"
    assert index.n_damaged == 1 and index.notices[0].startswith("line 3: a spike record that cannot be read (kind")
    (parsed,) = read_metrics(path)
    assert [s.step for s in parsed.spikes] == [100, 103]


def test_spike_words():
    assert spike_words(a_spike()) == ("step 100: loss spike (score 12); fc2's update norm rose 3 steps before the "
                                      "loss; fc5 followed 1 step later")
    assert spike_words(a_spike(step=1234, steps=tuple(range(1229, 1240)), score=float("inf"), kind="explosion",
                               leaders=(Lead("fc3", "grad_norm", 1234, 0, 40.0),))) == \
        "step 1,234: loss explosion (off the scale); fc3's gradient norm rose at the same step as the loss"
    assert spike_words(a_spike(score=4.25, leaders=())) == \
        "step 100: loss spike (score 4.2); no layer's numbers left their band before the loss"
    # an explosion's finite score (a loss of 1e32 against a band of 2.3): three digits, not forty
    assert spike_words(a_spike(score=2.5127892678581878e32, kind="explosion", leaders=())) == \
        "step 100: loss explosion (score 2.51e+32); no layer's numbers left their band before the loss"
    assert spike_words(a_spike(score=999_999.0, leaders=())).startswith("step 100: loss spike (score 999,999);")
    assert spikes_summary([]) == "no loss spikes"
    assert spikes_summary([a_spike(), a_spike(), a_spike(leaders=(Lead("fc1", "grad_norm", 99, 1, 5.0),))]) == \
        "3 loss spikes: fc2 led 2, fc1 led 1"


def test_robust_scores_match_their_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 300))
    x[0, 200] = 10.0
    x[1, 250] = float("nan")
    s = robust_scores(x, 64)
    assert np.isnan(s[:, :64]).all() and np.isfinite(s[0, 64:]).all()
    for row, i in ((0, 150), (0, 200), (1, 249)):
        band = x[row, i - 64:i]
        med = np.median(band)
        assert s[row, i] == pytest.approx((x[row, i] - med) / (1.4826 * np.median(np.abs(band - med))))
    assert s[0, 200] > 10 and s[1, 250] == np.inf and np.isfinite(s[1, 251])  # NaN left out of the band after


def test_a_batch_that_moves_every_layer_at_once_is_said_to_be_the_batch():
    rec = a_spike(leaders=(Lead("fc2", "grad_norm", 100, 0, 30.0), Lead("fc1", "grad_norm", 100, 0, 20.0)))
    assert spike_words(rec).endswith("; all 2 layers moved at the loss's own step, none before (the batch, not a layer)")


# ---------------------------------------------------------------------------------------------- real training
K = 150  # the step of the injected fault


def train(digits, fault: str | None, steps: int = 230, **changes):
    """A relu MLP (784-128x5-10, kaiming, SGD lr 0.01 momentum 0.9) on the embedded digits, with a fault injected
    by this test (never by the product): fc3's weights x 8 by an optimiser hook as step K-1 ends ("weight": a layer
    that moved far in one update), or the batch of step K with its labels shuffled ("labels"). Returns the
    trainer's records."""
    import torch

    from vgtui.core.config import RunConfig
    from vgtui.engine.data import TensorData
    from vgtui.engine.trainer import Trainer

    cfg = RunConfig(dataset="mnist-5k", depth=5, width=128, activation="relu", init="kaiming", lr=0.01, epochs=100,
                    max_steps=steps, device="cpu").replace(**changes)
    data = TensorData(**{f: getattr(digits, f) for f in digits.__dataclass_fields__})
    data.y_train = digits.y_train.clone()  # this test's own labels, shuffled for one step
    recs: list = []
    trainer = Trainer(cfg, [recs.append], data=data)
    trainer.prepare()
    fc3 = dict(trainer.main.probes.layers)["fc3"]

    def scale(opt, args, kwargs):
        if fault == "weight" and trainer.main.step == K - 1:
            with torch.no_grad():
                fc3.weight.mul_(8)

    trainer.optimizer.register_step_post_hook(scale)

    def inject(t):
        if t.step == K - 1 and fault == "labels":
            data.y_train.copy_(digits.y_train[torch.randperm(len(digits.y_train),
                                                             generator=torch.Generator().manual_seed(1))])
        if t.step == K:
            data.y_train.copy_(digits.y_train)

    trainer.on_step = inject
    end = trainer.run()
    assert end.status == "completed", end.message
    return recs


def spikes_of(recs):
    from vgtui.core.records import SpikeRecord

    return [r for r in recs if isinstance(r, SpikeRecord)]


def test_a_layer_whose_weights_jump_is_named_first_one_step_before_the_loss(digits):
    recs = train(digits, "weight")
    (spike,) = spikes_of(recs)
    # fc3's weights are 8x after the update of step K-1: the loss of step K jumps, fc3 moved one step before it
    assert spike.step == K and spike.kind == "spike" and spike.score > 8
    lead = spike.leader
    assert (lead.layer, lead.metric, lead.step, lead.lead) == ("fc3", "weight_norm", K - 1, 1)
    assert all(l.lead == 0 for l in spike.leaders[1:])  # the others moved with the loss, through fc3
    assert lead.score > 2 * spike.leaders[1].score
    assert spike_words(spike).startswith(f"step {K}: loss spike (score ")
    assert "; fc3's weight norm rose 1 step before the loss; " in spike_words(spike)
    # the window: 64 steps before, 8 after, every layer's series, the loss as trained
    assert spike.steps == tuple(range(K - 64, K + 9))
    assert set(spike.series) == {"grad_norm", "update_norm", "weight_norm"}
    assert all(set(v) == {f"fc{i}" for i in range(1, 7)} for v in spike.series.values())
    w = spike.series["weight_norm"]["fc3"]
    i = spike.steps.index(K - 1)
    assert 7.5 < w[i] / w[i - 1] < 8.5  # fc3's weight norm, x 8 at step K-1
    assert spike.loss[i + 1] > 1.5 * max(spike.loss[:i + 1])
    # the headless report says it as it comes, and at the end
    import io

    from vgtui.commands.headless import Reporter

    out = io.StringIO()
    reporter = Reporter(out, tty=False)
    for rec in recs:
        reporter(rec)
    text = out.getvalue()
    assert f"spike: step {K}: loss spike (score " in text and "spikes: 1 loss spike: fc3 led 1\n" in text
    assert text.index("spikes: 1 loss spike") < text.index("done: ")


def test_a_corrupted_batch_moves_every_layer_at_the_loss_step_and_is_said_to_be_the_batch(digits):
    recs = train(digits, "labels")
    (spike,) = spikes_of(recs)
    assert spike.step == K and spike.score > 20
    assert {l.layer for l in spike.leaders} == {f"fc{i}" for i in range(1, 7)}
    assert all(l.lead == 0 for l in spike.leaders)  # no layer "led": nothing left its band before the loss
    assert "all 6 layers moved at the loss's own step, none before (the batch, not a layer)" in spike_words(spike)


def test_ordinary_training_of_the_seeds_network_raises_no_alarm(digits):
    from vgtui.core.config import RunConfig
    from vgtui.engine.trainer import Trainer

    recs: list = []
    trainer = Trainer(RunConfig(dataset="mnist-5k", epochs=100, max_steps=300, device="cpu"), [recs.append],
                      data=digits)
    assert trainer.run().status == "completed"
    assert spikes_of(recs) == []
    fl = trainer.main.flight
    assert list(fl.h_steps) == list(range(1, 301)) and np.isfinite(fl.h_vals).all()  # every step was recorded
    assert fl.metric == "update_norm" and (fl.h_vals[:, 1:] > 0).all()


def test_ordinary_training_of_a_small_cnn_under_watch_raises_no_alarm(digits, tmp_path, capsys):
    import torch
    import torch.nn.functional as F
    from torch import nn

    import vgtui

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = digits.x_train.reshape(-1, 1, 28, 28), digits.y_train
    path = tmp_path / "cnn.jsonl"
    with vgtui.watch(model, path, every=50, optimizer=opt) as probe:
        for step in range(200):
            i = (step * 32) % (len(x) - 32)
            loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss)
    assert probe.spikes == [] and probe._flight.metric == "step_norm"
    assert list(probe._flight.h_steps) == list(range(1, 201))
    (run,) = read_metrics(path)
    assert run.spikes == [] and run.end.status == "completed"
    assert "vgtui.watch: no loss spikes\n" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["sgd-momentum", "sgd", "adam", "adamw-no-decay"])
def test_the_update_norm_is_the_norm_of_the_change_the_optimiser_made(digits, optimizer):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from vgtui.engine.flight import FlightRecorder

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 300), nn.Sigmoid(), nn.Linear(300, 10))  # fc1 > SAMPLE_CPU: sampled rows
    params = model.parameters()
    opt = {"sgd-momentum": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9),
           "sgd": lambda: torch.optim.SGD(params, lr=0.1),
           "adam": lambda: torch.optim.Adam(params, lr=1e-3),
           "adamw-no-decay": lambda: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)}[optimizer]()
    layers = [("fc1", model[0]), ("fc2", model[2])]
    flight = FlightRecorder(layers, opt, "cpu")
    twin = FlightRecorder(layers, opt, "cpu")
    twin.fused = True  # the row as an accelerator writes it: one fused norm call and a stack
    changes, grads, weights = [], [], []
    for step in range(1, 9):
        i = step * 64
        loss = F.cross_entropy(model(digits.x_train[i:i + 64]), digits.y_train[i:i + 64])
        opt.zero_grad()
        loss.backward()
        before = [m.weight.detach().clone() for _, m in layers]
        opt.step()
        flight.record(step, loss)
        twin.record(step, loss)
        changes.append([float((m.weight.detach() - b).norm()) for (_, m), b in zip(layers, before)])
        grads.append([float(m.weight.grad.norm()) for _, m in layers])
        weights.append([float(m.weight.detach().norm()) for _, m in layers])
    flight.check()
    twin.check()
    assert np.array_equal(flight.h_vals, twin.h_vals) and not flight.fused  # the CPU's row, cell by cell: the same
    n = 2
    assert flight.metric == ("step_norm" if "adam" in optimizer else "update_norm")
    got_update = flight.h_vals[:, 1 + n:1 + 2 * n]
    # fc2 exactly; fc1 (235,200 weights) from its first 41 rows, scaled to the whole layer: an estimate, within 20%
    assert np.allclose(got_update[:, 1], np.array(changes)[:, 1], rtol=1e-4)
    assert np.allclose(got_update[:, 0], np.array(changes)[:, 0], rtol=0.2)
    assert np.allclose(flight.h_vals[:, 1:1 + n][:, 1], np.array(grads)[:, 1], rtol=1e-5)
    assert np.allclose(flight.h_vals[:, 1:1 + n][:, 0], np.array(grads)[:, 0], rtol=0.2)
    assert np.allclose(flight.h_vals[:, -n:], np.array(weights), rtol=0.05)


def test_the_first_step_not_finite_is_read_from_the_rows(digits):
    """first_not_finite(after): the first step held whose loss or a layer's gradient norm is not finite (a NaN loss
    at step 4, an infinite gradient in fc2 at step 6 with a finite loss), after the step given."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from vgtui.engine.flight import FlightRecorder

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 32), nn.Sigmoid(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # never stepped: each step's numbers are as made here
    flight = FlightRecorder([("fc1", model[0]), ("fc2", model[2])], opt, "cpu")
    for step in range(1, 9):
        i = step * 64
        loss = F.cross_entropy(model(digits.x_train[i:i + 64]), digits.y_train[i:i + 64])
        opt.zero_grad()
        loss.backward()
        if step == 6:
            model[2].weight.grad[0, 0] = math.inf
        flight.record(step, loss * math.nan if step == 4 else loss)
    assert flight.first_not_finite(0) is None  # nothing read yet
    flight.check()
    assert [flight.first_not_finite(a) for a in (0, 3, 4, 5, 6)] == [4, 4, 6, 6, None]


def test_an_explosion_that_ends_the_run_is_recorded_before_the_end_record(digits):
    from vgtui.core.config import RunConfig
    from vgtui.engine.trainer import Trainer

    recs: list = []
    cfg = RunConfig(dataset="mnist-5k", depth=3, width=32, activation="relu", init="kaiming", lr=3.0, epochs=3,
                    device="cpu")
    end = Trainer(cfg, [recs.append], data=digits).run()
    assert (end.status, end.cause) == ("diverged", "exploded")
    assert [r.type for r in recs][-2:] == ["spike", "end"]
    (spike,) = spikes_of(recs)
    assert spike.kind == "explosion" and spike.step <= end.steps and spike.score > 8
    assert spike_words(spike).startswith(f"step {spike.step}: loss explosion (score ")
