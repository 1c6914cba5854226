"""The Hugging Face Trainer callback (vgtui.integrations.hf): a tiny BERT built from a config (nothing downloads),
a few steps on the CPU through the real Trainer; the file holds the layers, the Trainer's loss, learning rate and
eval metrics at each snapshot, ends with how the run ended, and opens in `vgtui replay`. Without transformers,
importing the integration says in one line which pip command adds it; `import vgtui` imports none of this."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import textwrap

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may download
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from conftest import ROOT  # noqa: E402
from vgtui.core.metrics import read_metrics  # noqa: E402
from vgtui.integrations.hf import VgtuiCallback  # noqa: E402

SEQ = 12


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=SEQ, num_labels=2)
    return BertForSequenceClassification(cfg)


def examples(n, seed):
    """A task the model can learn: the label says whether the first token is in the upper half of the vocabulary."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (n, SEQ), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
             "labels": int(ids[i, 0] > 32)} for i in range(n)]


def trainer(tmp_path, model, steps=12, **kw):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                             logging_steps=5, eval_strategy="steps", eval_steps=4, report_to=[], use_cpu=True,
                             save_strategy="no", learning_rate=1e-3, lr_scheduler_type="linear", disable_tqdm=True,
                             seed=0, **kw)
    return Trainer(model=model, args=args, train_dataset=examples(64, 1), eval_dataset=examples(16, 2))


def replay(path):
    """`vgtui replay FILE` without a terminal: the file's summary on stdout, exit status 0."""
    return subprocess.run([sys.executable, "-m", "vgtui", "replay", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)


async def test_trainer_callback_records_layers_loss_lr_and_eval_metrics(tmp_path):
    model = tiny_bert()
    tr = trainer(tmp_path, model)
    cb = VgtuiCallback(metrics=tmp_path / "run.jsonl", every=4, quiet=True)
    tr.add_callback(cb)
    tr.train()

    (run,) = read_metrics(tmp_path / "run.jsonl")
    h = run.header
    assert h.source == "vgtui.watch" and h.probe_every == 4 and h.total_steps == 12 and h.device == "cpu"
    assert h.model == f"BertForSequenceClassification, {sum(p.numel() for p in model.parameters()):,} parameters"
    names = [layer.name for layer in h.layers]
    assert len(names) == 14 and names[0] == "bert.encoder.layer.0.attention.self.query" and names[-1] == "classifier"
    assert ("bert.pooler.dense", "Linear", "tanh") in [(la.name, la.kind, la.activation) for la in h.layers]
    assert [s.step for s in run.snapshots] == [1, 4, 8, 12]
    assert run.end.status == "completed" and run.end.steps == 12 and cb.watch.closed

    # every snapshot holds the Trainer's own numbers of its step: it logged at each probed step (logging_steps=5
    # adds steps 5 and 10), its learning rate of that step, and its latest evaluation (every 4 steps)
    logged = {e["step"]: e for e in tr.state.log_history if "loss" in e}
    evals = {e["step"]: e for e in tr.state.log_history if "eval_loss" in e}
    assert sorted(logged) == [1, 4, 5, 8, 10, 12] and sorted(evals) == [4, 8, 12]
    for s in run.snapshots:
        assert s.loss == pytest.approx(logged[s.step]["loss"], rel=1e-6)
        assert s.metrics["lr"] == pytest.approx(logged[s.step]["learning_rate"], rel=1e-9)
        assert s.metrics["grad_norm"] == pytest.approx(logged[s.step]["grad_norm"], rel=1e-6)
        if s.step in evals:
            assert s.metrics["eval_loss"] == pytest.approx(evals[s.step]["eval_loss"], rel=1e-6)
        assert not any(k.endswith(("_runtime", "_per_second")) or k in ("epoch", "loss") for k in s.metrics)
    assert "eval_loss" not in run.snapshots[0].metrics and run.snapshots[0].metrics["lr"] == pytest.approx(1e-3)
    assert run.snapshots[2].loss_avg == pytest.approx((logged[5]["loss"] + logged[8]["loss"]) / 2, rel=1e-6)
    for s in run.snapshots:  # the probes' numbers: a gradient in every layer, read before the step
        assert all(la.grad_norm > 0 and la.weight_norm > 0 and la.update_data_ratio > 0 for la in s.layers)

    r = replay(tmp_path / "run.jsonl")
    assert r.returncode == 0, r.stderr
    assert (f"{tmp_path / 'run.jsonl'}: run 1: BertForSequenceClassification, {h.model.split(', ')[1]} · 14 layers"
            " · 4 snapshots · last step 12 · completed") in r.stdout

    # and in the replay screen itself: the model's own layer names, the Trainer's numbers in the status line (the
    # UI imported here: the crash test's child process imports this module's helpers without it)
    from ui.conftest import shows, status_shows
    from vgtui.sources.file import FileSource
    from vgtui.ui.app import VgtuiApp

    src = FileSource(str(tmp_path / "run.jsonl"))
    src.open()
    app = VgtuiApp([src], fps=8)
    async with app.run_test(size=(120, 40)) as pilot:
        await shows(pilot, app.main.query_one("#grads"), "classifier")
        status = await status_shows(pilot, "eval_loss")
        assert "lr " in status and "grad_norm " in status and "completed" in status


def test_the_snapshot_holds_the_steps_own_gradients(tmp_path):
    """One batch of the whole (8-example) data set, no dropout: step 1's gradients and weights are those of plain
    torch on the same batch, read inside accelerate's optimiser wrapper (after the Trainer's clipping)."""
    model = tiny_bert()
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ref = copy.deepcopy(model)
    data = examples(8, 3)
    tr = trainer(tmp_path, model, steps=2)
    tr.train_dataset = data
    tr.add_callback(VgtuiCallback(metrics=tmp_path / "one.jsonl", every=1, quiet=True))
    tr.train()
    batch = {k: torch.stack([torch.as_tensor(e[k]) for e in data]) for k in data[0]}
    ref.train()
    ref(**batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    (run,) = read_metrics(tmp_path / "one.jsonl")
    assert [s.step for s in run.snapshots] == [1, 2]
    for la in run.snapshots[0].layers:
        w = ref.get_submodule(la.name).weight
        assert la.grad_norm == pytest.approx(w.grad.norm().item(), rel=1e-5), la.name
        assert la.weight_norm == pytest.approx(w.norm().item(), rel=1e-5), la.name


def test_an_exception_out_of_train_ends_the_file_failed(tmp_path):
    """The Trainer has no exception event: the watch ends the file at interpreter exit with the uncaught
    exception; a later trainer.train() with the same callback ends it too, at its start."""
    path = tmp_path / "crash.jsonl"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_integrations_hf import tiny_bert, trainer, Crash
        from vgtui.integrations.hf import VgtuiCallback
        from pathlib import Path
        tr = trainer(Path({str(tmp_path)!r}), tiny_bert())
        tr.add_callback(VgtuiCallback(metrics={str(path)!r}, every=2, quiet=True))
        tr.add_callback(Crash())
        tr.train()
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1 and "RuntimeError: the data loader broke at step 3" in r.stderr
    (run,) = read_metrics(path)
    assert run.end.status == "failed" and run.end.message == "RuntimeError: the data loader broke at step 3"
    assert "raise RuntimeError" in run.end.traceback and run.end.steps == 3
    assert [s.step for s in run.snapshots] == [1, 2]

    # in one process (a notebook): the next trainer.train() ends the previous file as failed
    tr = trainer(tmp_path, tiny_bert(), steps=3)
    cb = VgtuiCallback(metrics=tmp_path / "first.jsonl", every=2, quiet=True)
    tr.add_callback(cb)
    tr.add_callback(Crash())
    with pytest.raises(RuntimeError, match="broke at step 3"):
        tr.train()
    assert not cb.watch.closed
    first = cb.watch
    cb.metrics = tmp_path / "second.jsonl"
    tr.remove_callback(Crash)
    tr.args.gradient_accumulation_steps = 2  # a step is an optimiser step: three of two batches each
    tr.train()
    assert first.closed and cb.watch is not first and cb.watch.closed
    (run,) = read_metrics(tmp_path / "first.jsonl")
    assert run.end.status == "failed" and "stopped before its end" in run.end.message and run.end.steps == 3
    (run,) = read_metrics(tmp_path / "second.jsonl")
    assert run.end.status == "completed" and run.end.steps == 3 and [s.step for s in run.snapshots] == [1, 2]
    logged = {e["step"]: e["loss"] for e in tr.state.log_history if "loss" in e}
    assert [s.loss for s in run.snapshots] == pytest.approx([logged[1], logged[2]], rel=1e-6)


class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("the data loader broke at step 3")


def test_without_transformers_one_line_names_the_pip_command():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "try:\n    from vgtui.integrations import hf\n"
            "except ImportError as e:\n    print(str(e)); print(e.__cause__, e.__suppress_context__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("vgtui.integrations.hf needs transformers, which is not installed: "
                        "pip install 'vgtui[hf]'\nNone True\n")


def test_import_vgtui_imports_no_trainer_and_no_torch():
    code = "import vgtui, sys; print('transformers' in sys.modules, 'lightning' in sys.modules, 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout == "False False False\n", r.stderr
    code = "import vgtui.integrations, sys; print('transformers' in sys.modules, 'lightning' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout == "False False\n", r.stderr


def test_the_extras_the_messages_name_exist_and_the_test_extra_installs_them():
    """`pip install 'vgtui[hf]'` and `'vgtui[lightning]'` are real extras, and the test extra (what CI installs)
    holds every requirement of both, so that these tests run there rather than fail to import."""
    text = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11's; the project runs on 3.10
    section = text.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    extras = {name: re.findall(r'^\s*"([^"]+)"', body, re.M)
              for name, body in re.findall(r"^(\w+) = \[\n(.*?)^\]", section, re.M | re.S)}
    assert [r.split(">")[0] for r in extras["hf"]] == ["transformers", "accelerate"]
    assert [r.split(">")[0] for r in extras["lightning"]] == ["lightning"]
    assert set(extras["hf"]) | set(extras["lightning"]) <= set(extras["test"])
