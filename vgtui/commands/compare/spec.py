"""The SPEC grammar (`sigmoid`, `relu+kaiming+depth30`, `softsign+xavier+lr0.1`) and the command's arguments
turned into the configurations to run: vgtui's defaults, then compare's, then the preset's, then the options given,
then each SPEC's words. A bad SPEC or option is refused here, before anything imports torch.
"""

from __future__ import annotations

import argparse
import difflib
import re
from dataclasses import dataclass
from typing import Any

from vgtui.commands.compare.presets import COMPARE_DEFAULTS, PRESETS, Preset
from vgtui.core.config import (ACTIVATIONS, INITS, OPTIMIZERS, SEED_MAX, ConfigError, RunConfig, check_fits,
                                 default_data_dir)

FLAGS = {"bn": "batchnorm", "batchnorm": "batchnorm", "skip": "skip"}
NUMBERED = {"depth": int, "width": int, "lr": float, "batch": int, "momentum": float}
GRAMMAR = f"""\
SPEC: words joined by "+", each at most once per kind:
  activation  {', '.join(ACTIVATIONS)}
  init        {', '.join(INITS)}
  remedies    bn (or batchnorm), skip
  optimizer   {', '.join(OPTIMIZERS)}
  numbers     depthN, widthN, batchN (hidden layers, units, batch size), lrX, momentumX (e.g. lr0.1)
Words left out come from the options (--activation, --depth, ...; a preset's own defaults first).
e.g. sigmoid  relu+kaiming  sigmoid+bn  sigmoid+skip  selu+lecun  relu+kaiming+depth30  softsign+xavier+lr0.1"""


class SpecError(ValueError):
    """A SPEC that does not parse; the message names the bad word and the closest valid one."""


def _vocabulary() -> list[str]:
    return [*ACTIVATIONS, *INITS, *FLAGS, *OPTIMIZERS, *(f"{k}N" for k in NUMBERED)]


def _closest(word: str) -> str:
    """The closest valid word, for the error message (a numbered word keeps the user's number)."""
    m = re.fullmatch(r"([a-z_-]*?)([-+]?[0-9.e]+)", word)
    stem, num = (m.group(1), m.group(2)) if m else (word, "")
    if num:
        hit = difflib.get_close_matches(stem, list(NUMBERED), n=1, cutoff=0.5)
        if hit:
            return hit[0] + num
    hit = difflib.get_close_matches(word, _vocabulary(), n=1, cutoff=0.4)
    return hit[0] if hit else ""


def parse_spec(spec: str, base: RunConfig) -> RunConfig:
    """The configuration SPEC names, on top of `base`; SpecError for a bad one (validated like the options)."""
    words = [w.strip().lower() for w in spec.split("+")]
    if not spec.strip() or any(not w for w in words):
        raise SpecError(f"{spec!r}: an empty word (words are joined by a single +)")
    changes: dict[str, Any] = {}
    kinds: dict[str, str] = {}

    def put(kind: str, word: str, **kw: Any) -> None:
        if kind in kinds:
            raise SpecError(f"{spec!r}: two words for the {kind} ({kinds[kind]!r} and {word!r})")
        kinds[kind] = word
        changes.update(kw)

    for w in words:
        m = re.fullmatch(r"([a-z]+)([-+]?\.?[0-9][0-9.e+-]*)", w)
        if w in ACTIVATIONS:
            put("activation", w, activation=w)
        elif w in INITS:
            put("init", w, init=w)
        elif w in FLAGS:
            put(FLAGS[w], w, **{FLAGS[w]: True})
        elif w in OPTIMIZERS:
            put("optimizer", w, optimizer=w)
        elif m and m.group(1) in NUMBERED:
            key, conv = m.group(1), NUMBERED[m.group(1)]
            try:
                value = conv(m.group(2))
            except ValueError:
                raise SpecError(f"{spec!r}: {w!r}: {key} takes {'a whole number' if conv is int else 'a number'}, "
                                f"e.g. {key}{'30' if conv is int else '0.1'}") from None
            put(key, w, **{"batch_size" if key == "batch" else key: value})
        else:
            near = _closest(w)
            hint = f"; did you mean {near!r}?" if near else ""
            raise SpecError(f"{spec!r}: unknown word {w!r}{hint}")
    try:
        return base.replace(**changes).validate()
    except ConfigError as e:
        raise SpecError(f"{spec!r}: {e.option.lstrip('-')}: {e.message}") from None


def label(spec: str) -> str:
    return "+".join(w.strip().lower() for w in spec.split("+"))


RUN_OPTIONS = ("dataset", "epochs", "max_steps", "seed", "device", "batch_size", "lr", "momentum", "optimizer",
               "depth", "width", "activation", "init", "probe_every")


def base_config(args: argparse.Namespace, preset: Preset | None) -> RunConfig:
    """vgtui's defaults, then compare's, then the preset's, then the options given."""
    kw: dict[str, Any] = dict(COMPARE_DEFAULTS)
    kw.update(preset.defaults if preset else {})
    kw.update({k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k) is not None})
    kw.update(data_dir=args.data_dir or default_data_dir(), offline=args.offline)
    return RunConfig(**kw).validate()


class Refused(Exception):
    """Arguments the comparison refuses before anything runs (exit status 2): `message` for the person, and whether
    the SPEC grammar helps (`grammar`)."""

    def __init__(self, message: str, grammar: bool = False):
        super().__init__(message)
        self.message, self.grammar = message, grammar


@dataclass(frozen=True)
class Plan:
    """What to run: the preset (None: SPECs only), the configuration the SPECs are read on top of, and each
    configuration by its label, in the table's order."""

    preset: Preset | None
    base: RunConfig
    configs: list[tuple[str, RunConfig]]

    @property
    def labels(self) -> list[str]:
        return [n for n, _ in self.configs]


def plan(args: argparse.Namespace) -> Plan:
    """The configurations the parsed arguments ask for, each checked as `vgtui --headless` checks its own (Refused:
    the first problem found, in the order the person would fix them)."""
    preset = None
    if args.preset is not None:
        if args.preset not in PRESETS:
            near = difflib.get_close_matches(args.preset, list(PRESETS), n=1, cutoff=0.3)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise Refused(f"--preset: unknown preset {args.preset!r}{hint} (choose one of: {', '.join(PRESETS)})")
        preset = PRESETS[args.preset]
    specs = list(preset.specs if preset else ()) + list(args.specs)
    if not specs:
        raise Refused("give at least one SPEC or --preset NAME", grammar=True)
    if args.seeds < 1:
        raise Refused(f"--seeds: must be a positive whole number, got {args.seeds}")
    try:
        base = base_config(args, preset)
    except ConfigError as e:
        raise Refused(str(e)) from None
    except TypeError as e:  # pragma: no cover - a preset default that RunConfig does not know
        raise Refused(str(e)) from None
    if base.seed + args.seeds - 1 > SEED_MAX:
        raise Refused(f"--seeds {args.seeds} from --seed {base.seed} runs past the largest seed, 2**63-1; "
                      "choose a smaller --seed or fewer --seeds")
    configs: list[tuple[str, RunConfig]] = []
    for s in specs:
        try:
            configs.append((label(s), parse_spec(s, base)))
        except SpecError as e:
            raise Refused(str(e), grammar=True) from None
    labels = [n for n, _ in configs]
    dup = next((n for n in labels if labels.count(n) > 1), None)
    if dup:
        raise Refused(f"{dup!r} is given twice")
    for name, cfg in configs:  # the check `vgtui --headless` applies, for every configuration before any runs
        try:
            check_fits(cfg)
        except ConfigError as e:
            raise Refused(f"{name!r}: {e}") from None
    return Plan(preset, base, configs)
