"""`vgtui lesson`: the lessons (issue 17). Without a name it lists the built-in ones; `vgtui lesson NAME` (or a path
to a lesson file) opens the UI with the lesson beside the charts. A lesson file that cannot be used is refused in one
line naming the file, the line and what is wrong (exit status 2); `--check` reads it and says what it holds."""

from __future__ import annotations

import argparse
import os
import sys

from vgtui.core.lesson import Lesson, LessonError, builtin_names, read_lesson

SCALE_ENV = "VGTUI_LESSON_SCALE"  # the default of --steps-scale (the tests' short runs)


def figures() -> dict[str, dict[str, str]]:
    """PRESET -> {SPEC: the paper's figure in words}: what `figure = "PRESET:SPEC"` in a lesson names, as `vgtui
    compare --preset` shows it."""
    from vgtui.commands.compare.presets import PRESETS

    return {name: {spec: f"{p.about.split(':')[0]}, {p.paper or 'paper'} for {spec}: {value}"
                   for spec, value in p.paper_values.items()} for name, p in PRESETS.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vgtui lesson", description="A lesson: predict, then reveal, on the live network. Without LESSON: the "
        "built-in lessons. Keys: 1-4 the class's answer (then it runs), enter run / next step, backspace this step "
        "again; every key of vgtui still works.",
        epilog="The lesson file format (TOML) is in the README, with a complete example: "
               "examples/lessons/my_first_lesson.toml.")
    p.add_argument("lesson", nargs="?", help="a built-in lesson's name or a lesson file (.toml)")
    p.add_argument("--check", action="store_true", help="read the lesson, print its steps and exit (no training)")
    p.add_argument("--steps-scale", type=float, default=None, metavar="X",
                   help=f"multiply every step's run by X (a quick demo: 0.25; default ${SCALE_ENV} or 1)")
    p.add_argument("--metrics", metavar="PATH", help="append every record, and the class's answers, to PATH")
    p.add_argument("--overwrite", action="store_true", help="as vgtui's --overwrite")
    p.add_argument("--fps", type=float, default=2.0, help="most redraws a second (default: %(default)s)")
    return p


def scale_from(value: float | None) -> float:
    if value is None:
        raw = os.environ.get(SCALE_ENV, "1")
        try:
            value = float(raw)
        except ValueError:
            raise LessonError(SCALE_ENV, None, f"{raw!r} is not a number") from None
    if not 0 < value <= 100:
        raise LessonError("--steps-scale", None, f"must be above 0 and at most 100, got {value!r}")
    return value


def describe(lesson: Lesson) -> str:
    lines = [f"{lesson.name}: {lesson.title} ({len(lesson.steps)} step{'s' * (len(lesson.steps) != 1)})"]
    for i, s in enumerate(lesson.steps, 1):
        setup = ("goes on" if not s.restart else "fork " + ", ".join(f"{b}={c.describe()}" for b, c in
                                                                   s.configs().items()) if s.fork else
                 f"restart: {s.config.describe()}")
        run = f"{s.run:,} steps" if s.run else ""
        if s.until:
            run += (" or " if run else "") + f"until {s.until}"
        q = f"; asks: {s.question} ({len(s.answers)} answers)" if s.question else ""
        lines.append(f"  {i}. {s.title} [{setup}; {run or 'no run'}]{q}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    figs = figures()
    if not args.lesson:
        print("built-in lessons (vgtui lesson NAME; or a lesson file: vgtui lesson my_lesson.toml):")
        for name in builtin_names():
            lesson = read_lesson(name, figs)
            print(f"  {name:<11} {lesson.title} ({len(lesson.steps)} step{'s' * (len(lesson.steps) != 1)}): {lesson.about}")
        return 0
    try:
        lesson = read_lesson(args.lesson, figs, scale_from(args.steps_scale))
    except LessonError as e:
        print(f"vgtui lesson: error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(describe(lesson))
        return 0
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("vgtui lesson: error: a lesson needs a terminal (try --check to read it)", file=sys.stderr)
        return 2
    if args.metrics:
        from vgtui.core.writer import check_writable

        try:
            check_writable(args.metrics, overwrite=args.overwrite)
        except ValueError as e:
            print(f"vgtui lesson: error: {e}", file=sys.stderr)
            return 2
    from vgtui.ui.lesson_app import run_lesson

    return run_lesson(lesson, args.metrics, fps=args.fps, overwrite=args.overwrite)
