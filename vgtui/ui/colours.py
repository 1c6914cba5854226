"""Every colour of the UI, named once, by what it means (256-colour codes; `style()` makes a Rich style of one).

Regime colours mean regimes and nothing else: a layer's or a run's verdict (its bar, its badge, its row in the
layer table). The runs, the curves and the notices have colours of their own, none of them a regime's.
"""

from __future__ import annotations

from rich.color import Color

# regimes: the verdict of a layer or of a run (vgtui.core.diagnosis)
VANISHING = 214  # orange: too little gradient (or saturated units, not learning)
HEALTHY = 78  # green
EXPLODING = 201  # magenta: too much (or a loss that rises)
DIVERGED = 196  # red: non-finite; also failures
SATURATED = 208  # dark orange: most of a layer's units where its activation is flat
DEAD = 160  # dark red: units off on every example
TOO_LARGE = 171  # violet: updates above a tenth of the weights
FROZEN = 244  # grey: a layer that does not train (no fault)
REGIME = {"frozen": FROZEN, "healthy": HEALTHY, "vanishing": VANISHING, "too large": TOO_LARGE, "dead": DEAD,
          "saturated": SATURATED, "exploding": EXPLODING, "diverged": DIVERGED}

# runs and curves
# The runs on one screen (vgtui.ui.state.TAGS: A, B, ... H): run i's curves, legend entry, tag and badge mark are
# RUN[i]. Eight hues a dark terminal shows apart, none of them a regime's (no green, orange, red, magenta, violet or
# grey: a run's colour must never read as a verdict) and none the accuracies' yellow; the first four (a fork's
# branches) the farthest apart: sky, pink, khaki, cornflower, then teal, blush, brown, lavender.
RUN = (81, 213, 187, 69, 37, 224, 137, 147)
RUN_A = RUN[0]  # the run (and its loss curve; the accent of what runs, e.g. its activation)
RUN_B = RUN[1]  # a fork's branch, or the second file, beside A
LOSS = RUN_A
TRAIN_ACC = 229  # pale yellow dots
TEST_ACC = 255  # near-white dots
USER = (229, 255, 117, 223)  # a user's own metrics in the loss chart, in name order
EVENT = 177  # a live change (a marker on the curves), and the status line's notice: what just happened
LAYER_RAMP = (33, 39, 45, 50, 48, 83, 154, 190, 220, 208, 203, 198, 170, 134)  # layers by depth, first to last

# the frame
AXIS = 244  # axis labels, rulers
RULE = 238  # separators, a bar's empty rest, grid lines
WARNING = 220  # something to look at that is not a regime (a writer gone quiet)


def style(code: int, bold: bool = False, reverse: bool = False, on: int | None = None) -> str:
    """A Rich style string for colour `code` (`on`: a background, for badges)."""
    words = ["bold"] * bold + ["reverse"] * reverse
    words.append(f"black on color({on})" if on is not None and code == 0 else
                 f"color({code}) on color({on})" if on is not None else f"color({code})")
    return " ".join(words)


def hexc(code: int) -> str:
    """A 256-colour code as #rrggbb (Textual markup does not take color(N))."""
    return Color.from_ansi(code).get_truecolor().hex


REGIME_STYLE = {name: style(code, bold=name == "diverged") for name, code in REGIME.items()}
# the run's badge (vgtui.core.diagnosis.BADGES), by its words in lower case
BADGE_STYLE = {"vanishing": style(0, bold=True, on=VANISHING), "healthy": style(0, bold=True, on=HEALTHY),
               "exploding": style(0, bold=True, on=EXPLODING), "diverged": "bold white on " + style(DIVERGED),
               "saturated": style(0, bold=True, on=SATURATED), "dead units": "bold white on " + style(DEAD),
               "steps too large": style(0, bold=True, on=TOO_LARGE), "loss rising": style(0, bold=True, on=EXPLODING),
               "not learning": style(0, bold=True, on=VANISHING), "too early": "bold reverse"}
