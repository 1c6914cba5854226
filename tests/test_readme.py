"""The README and the pages under docs/: the front door says what is true.

- The first screenful: one sentence, a screenshot that exists, the CPU/GPU choice and the disk cost before the install
  commands, that a new shell needs the venv again, `vgtui` on the embedded digits, and keys to try.
- `.ci/run` runs the README's test command, exactly; no package index is spelled out where a name will do.
- Every relative link (and #anchor) of the README and docs/ leads somewhere.
- The figures quoted for `--skip` are the run's own (it used to say "the loss rises from 2.7 to 11", no statistic of
  the run); the hooks left between probed steps by `vgtui.watch` are the three the docs name (they used to say "the
  hooks exist only on probed steps")."""

import json
import re

import torch
from torch import nn

import vgtui
from conftest import ROOT, run_cli

README = (ROOT / "README.md").read_text()
PAGES = {p.relative_to(ROOT).as_posix(): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}


def code_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)]


def test_the_first_screenful_is_the_front_door():
    first = "\n".join(README.splitlines()[:45])
    image = re.search(r"!\[[^]]+\]\(([^)]+)\)", first)
    assert image and (ROOT / image.group(1)).is_file()
    # the choice and its cost come before the commands that install
    install = first.index("pip install .")
    assert first.index("5.5 GB") < install and first.index("1.1 GB") < install and first.index("GPU") < install
    blocks = code_blocks(first)
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install ." in blocks
    assert any(b.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch torchvision "
                            "--index-url https://download.pytorch.org/whl/cpu && pip install .") for b in blocks)
    assert "A new shell needs the venv again" in first and "vgtui" in blocks
    assert "5,000 real MNIST digits" in first and "nothing downloads" in first
    for key in ("`a`", "`f`", "`b`", "`q`"):
        assert key in first.split("Try this")[1]


def test_ci_runs_the_readmes_test_command():
    test_section = README.split("\n## Test\n", 1)[1]
    command = code_blocks(test_section)[0]
    assert command == "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && ruff check . && pytest"
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_no_default_package_index_address():
    for name, text in PAGES.items():
        assert "pypi.org" not in text, name


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation out, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_leads_somewhere():
    for name, text in PAGES.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, frag = target.partition("#")
            dest = (ROOT / name).parent / path if path else ROOT / name
            assert dest.exists(), f"{name}: {target}"
            if frag:
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
                assert frag in {anchor(h) for h in headings}, f"{name}: {target}"


def test_the_skip_figures_are_the_runs_own(tmp_path):
    """docs/compare.md: `--skip` at lr 0.01 overshoots, from 2.67 at step 1 to a peak of 62.5 at step 10; the first
    epoch's mean training loss 21.3 at 10% test accuracy. Its first epoch, a snapshot at every step."""
    metrics = tmp_path / "skip.jsonl"
    r = run_cli(["--headless", "--skip", "--epochs", "1", "--probe-every", "1", "--metrics", str(metrics)])
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in metrics.read_text().splitlines()]
    loss = {s["step"]: float(s["loss"]) for s in recs if s["type"] == "snapshot"}
    epoch = next(e for e in recs if e["type"] == "epoch")
    peak = max(loss, key=loss.get)
    assert (round(loss[1], 2), peak, round(loss[peak], 1)) == (2.67, 10, 62.5)
    assert round(epoch["train_loss"], 1) == 21.3 and epoch["test_acc"] == 0.1
    assert max(s for s, v in loss.items() if v > 10) == 33 and loss[40] < 6
    text = " ".join(PAGES["docs/compare.md"].split())
    assert ("from 2.67 at step 1 it climbs to a peak of 62.5 at step 10, is still above 10 at step 33 and back under 6 "
            "by step 40, so the first epoch's mean training loss is 21.3, at 10% test accuracy") in text
    assert "from 2.7 to 11" not in " ".join(" ".join(PAGES.values()).split())


def hooks(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, int, int]:
    """(module hooks of every kind on the model and its modules, optimiser step pre-hooks, step post-hooks)."""
    modules = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    return modules, len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)


def test_the_hooks_left_between_probed_steps_are_the_three_the_docs_name(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    between = []
    with vgtui.watch(model, metrics=str(tmp_path / "r.jsonl"), every=5, optimizer=opt) as probe:
        for step in range(1, 8):
            loss = model(torch.randn(3, 4)).square().mean()
            opt.zero_grad()
            loss.backward()
            if step not in (1, 5):  # steps 2-4, 6, 7 are not probed
                between.append(hooks(model, opt))
            opt.step()
            probe.step(loss=loss)
    assert set(between) == {(1, 1, 1)}  # the model's forward pre-hook; the optimiser's step pre- and post-hooks
    assert hooks(model, opt) == (0, 0, 0)  # close() removed them all
    watch = " ".join(PAGES["docs/watch.md"].split())
    assert ("The probes' module hooks exist only on probed steps (step 1, then every `every`-th); three light hooks "
            "stay between them: one forward pre-hook on the model") in watch
    assert "the optimiser's step pre- and post-hooks" in watch
    everything = " ".join(" ".join(PAGES.values()).split())
    assert "the hooks exist only on probed steps (step 1, then every `every`-th)" not in everything
