"""Lesson files (issue 17): the parser, the evaluator and `vgtui lesson` without the UI. A bad lesson file is refused
in one line naming the file, the line and what is wrong (exit status 2); expressions are computed by a whitelisted
evaluator (never Python's eval); a step's reveal flips with the run's numbers (real training, two configurations);
the class's answer is an event the reader reads back as written."""

from __future__ import annotations

import math

import pytest

from conftest import ROOT
from vgtui.cli import main
from vgtui.commands.lesson import figures
from vgtui.core.diagnosis import ratio_words
from vgtui.core.lesson import (LessonError, Numbers, builtin_names, compile_expr, evaluate, parse_lesson,
                               read_lesson, reveal)

GOOD = '''[lesson]
title = "t"

[[step]]
title = "one"
text = "some text"
question = "how much?"
answers = ["a lot", "a little"]
right = "1 if ratio(first, last) > 0.01 else 2"
run = 20
reveal = "fc1 got {words(ratio('fc1', 'fc6'))}"
'''

# (what is wrong, the file's text, the line the error names, words the one line says)
BROKEN = [
    ("bad syntax", GOOD.replace('title = "one"', 'title = "one'), 5, "not valid TOML"),
    ("unknown key", GOOD.replace("question =", "qestion ="), 7, "unknown key 'qestion' (did you mean 'question'?)"),
    ("unknown activation", GOOD.replace('text = "some text"', 'config = { activation = "sigmod" }'), 6,
     "unknown activation 'sigmod'"),
    ("a question without answers", GOOD.replace('answers = ["a lot", "a little"]\n', ""), 7,
     "a question needs answers"),
    ("an expression naming a missing field", GOOD.replace("{words(ratio('fc1', 'fc6'))}", "{test_accuracy:.0%}"),
     11, "unknown name 'test_accuracy'"),
    ("a missing layer", GOOD.replace("ratio('fc1', 'fc6')", "ratio('fc1', 'fc9')"), 11, "no layer 'fc9'"),
    ("a hard-coded answer", GOOD.replace('right = "1 if ratio(first, last) > 0.01 else 2"', 'right = "2"'), 9,
     "right is a constant"),
    ("code in an expression", GOOD.replace('right = "1 if', 'right = "__import__(\'os\').system(\'true\') or 1 if'),
     9, "unknown function \"__import__('os').system\""),
    ("an attribute that is not a branch's", GOOD.replace("{words(ratio('fc1', 'fc6'))}", "{loss.__class__}"), 11,
     "only a branch's numbers have attributes"),
    ("five answers", GOOD.replace('["a lot", "a little"]', '["1", "2", "3", "4", "5"]'), 8,
     "two to four answers, got 5"),
    ("a fork of four", GOOD.replace('text = "some text"', 'fork = [{skip = true}, {batchnorm = true}, '
                                    '{init = "xavier"}, {activation = "tanh"}]'), 6, "at most 3 beside A"),
    ("a branch that does not exist", GOOD.replace("ratio(first, last) > 0.01", "C.loss > 1"), 9,
     "branch C does not exist"),
    ("an unknown option", GOOD.replace('text = "some text"', 'config = { learning_rate = 0.1 }'), 6,
     "unknown option 'learning_rate'"),
    ("a bad option value", GOOD.replace('text = "some text"', 'config = { depth = 0 }'), 6, "--depth"),
    ("no step", '[lesson]\ntitle = "t"\n', None, "no [[step]]"),
    ("an unknown table", GOOD + '\n[extra]\nx = 1\n', 13, "unknown table 'extra'"),
    ("a negative run", GOOD.replace("run = 20", "run = -5"), 10, "run must be a whole number"),
    ("a text too long for the panel", GOOD.replace('"some text"', '"' + "x" * 700 + '"'), 6, "at most 600"),
    ("an unknown figure", GOOD + 'figure = "glorot2011:tanh"\n', 12, "no preset 'glorot2011'"),
    ("a control character in the text", GOOD.replace('"some text"', '"red \\u001b[31m text"'), 6,
     "text holds a control character"),
]


@pytest.mark.parametrize("what,text,line,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_lesson_file_is_one_line_and_exit_2(what, text, line, words, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["lesson", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"vgtui lesson: error: {path}:"), err
    where = f"{path}:{line}: " if line else f"{path}: "
    assert where in err and words in err, err


def test_not_utf8_and_missing_files_are_one_line(tmp_path, capsys):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(GOOD.encode() + "# caf\xe9\n".encode("latin-1"))
    assert main(["lesson", str(bad)]) == 2
    assert f"{bad}:12: not UTF-8 text" in capsys.readouterr().err
    assert main(["lesson", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such lesson file" in err and "vanishing" in err


def test_the_list_and_check(capsys):
    assert main(["lesson"]) == 0
    out = capsys.readouterr().out
    for name in ("vanishing", "glorot2010", "he2015", "bn2015"):
        assert name in out
    assert sorted(builtin_names()) == ["bn2015", "glorot2010", "he2015", "vanishing"]
    example = ROOT / "examples" / "lessons" / "my_first_lesson.toml"
    assert main(["lesson", str(example), "--check"]) == 0
    out = capsys.readouterr().out
    assert "3 steps" in out and "fork A=sigmoid, B=sigmoid + batchnorm" in out and "until loss < 0.8 * chance" in out


def test_steps_scale_shortens_every_run():
    full, short = read_lesson("vanishing", figures()), read_lesson("vanishing", figures(), 0.1)
    assert [s.run for s in full.steps] == [40, 20, 40, 40, 40, 80]
    assert [s.run for s in short.steps] == [10] * 6  # the floor: two snapshots at a snapshot every 5 steps


def test_the_evaluator_refuses_what_is_not_whitelisted():
    for src in ("open('x')", "().__class__", "[x for x in (1,)]", "lambda: 1", "ratio('fc1')", "grad_norm[1]",
                "A.__dict__", "{'a': 1}", "loss; 1", "f'{loss}'"):
        with pytest.raises(ValueError):
            compile_expr(src, ("A",), ("fc1", "fc6"))


class S:  # a snapshot's fields the numbers read (a real one is tested below, with real training)
    def __init__(self, step, loss, grads):
        self.step, self.loss_avg, self.loss = step, loss, loss
        self.layers = tuple(L(f"fc{i + 1}", g) for i, g in enumerate(grads))


class L:
    def __init__(self, name, g):
        self.name, self.grad_norm = name, g
        self.activation = "sigmoid" if name != "fc3" else None
        self.update_data_ratio, self.saturated_frac, self.dead_frac = 1e-3, 0.1, 0.0
        self.deriv_mean, self.act_std, self.out_grad_norm, self.pre_grad_norm = 0.2, 0.3, g, g


def test_expressions_on_numbers():
    a = Numbers([S(5, 2.3, [1e-4, 1e-2, 1.0]), S(10, 2.2, [2e-4, 1e-2, 1.0]), S(15, 2.1, [3e-4, 1e-2, 1.0])])
    b = Numbers([S(5, 1.0, [0.5, 1, 1.0]), S(10, 0.5, [0.5, 1, 1.0])])
    nums = {"A": a, "B": b}
    assert evaluate("ratio('fc1', 'fc3')", nums) == pytest.approx(2e-4)
    assert evaluate("ratio(first, last) < 0.01", nums) is True
    assert evaluate("argmin([A.loss, B.loss])", nums) == 2
    assert evaluate("B.ratio(first, last) / A.ratio(first, last)", nums) == pytest.approx(2500)
    assert evaluate("words(ratio('fc1', 'fc3'))", nums) == ratio_words(2e-4) == "1/5,000"
    assert evaluate("grad_norm['fc2'] * 100", nums) == pytest.approx(1.0)
    assert evaluate("2 ** 3 + loss0 - loss", nums) == pytest.approx(8.2)
    assert math.isnan(evaluate("test_acc", nums))


def test_a_reveal_flips_with_the_runs_numbers(digits):
    """vanishing's first step, run for real on its own configuration (sigmoid) and on one that flips the outcome
    (relu + kaiming): the reveal's numbers and its right answer change with the run."""
    from vgtui.core.records import Snapshot
    from vgtui.engine.trainer import Trainer

    step = read_lesson("vanishing", figures()).steps[0]
    out = {}
    for cfg in (step.config, step.config.replace(activation="relu", init="kaiming")):
        recs = []
        Trainer(cfg.replace(max_steps=10, epochs=1, device="cpu"), [recs.append], data=digits).run()
        snaps = [r for r in recs if isinstance(r, Snapshot)]
        r = reveal(step, {"A": Numbers.of(snaps, cfg)}, answer=3)
        ratio = Numbers.of(snaps, cfg).ratio("fc1", "fc6")
        words = ratio_words(ratio)
        said = f"{words} of fc6's gradient" if words.startswith("1/") else f"{words} fc6's gradient"
        assert f"fc1 got {said}. Loss" in r.what, r.what
        out[cfg.activation] = (r.right, r.correct, ratio)
    assert out["sigmoid"][:2] == (3, True) and out["sigmoid"][2] < 0.01
    assert out["relu"][:2] == (1, False) and out["relu"][2] > 0.3


def test_the_class_answer_event_reads_back_as_written():
    from vgtui.core.records import EventRecord, RecordEncoder, record_from_json
    import json

    said = {"lesson": "vanishing", "question": 2, "answer": 3, "text": "less than 0.3"}
    line = RecordEncoder().line(EventRecord(step=40, set=said, elapsed_s=1.5))
    back = record_from_json(json.loads(line))
    assert isinstance(back, EventRecord) and back.set == said and back.step == 40


def test_a_reveal_that_cannot_be_computed_says_so():
    lesson = parse_lesson(GOOD, "good.toml")
    r = reveal(lesson.steps[0], {"A": Numbers([])}, answer=1)
    assert r.right is None and any(line.startswith("right: cannot tell") for line in r.lines)
    with pytest.raises(LessonError):
        parse_lesson("[[step]]\nrun = true\n", "x.toml")


def test_the_readmes_lesson_is_the_example_file():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Lessons: predict, then reveal\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block == (ROOT / "examples" / "lessons" / "my_first_lesson.toml").read_text()
    assert "screenshots/lesson-vanishing.svg" in section and (ROOT / "screenshots" / "lesson-vanishing.svg").is_file()


def test_no_terminal_and_a_bad_scale_are_one_line(monkeypatch, capsys):
    assert main(["lesson", "vanishing"]) == 2  # pytest's standard input is not a terminal
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a lesson needs a terminal (try --check" in err
    monkeypatch.setenv("VGTUI_LESSON_SCALE", "fast")
    assert main(["lesson", "vanishing", "--check"]) == 2
    assert "VGTUI_LESSON_SCALE: 'fast' is not a number" in capsys.readouterr().err
    assert main(["lesson", "vanishing", "--check", "--steps-scale", "0"]) == 2
    assert "--steps-scale: must be above 0" in capsys.readouterr().err
