"""Which layers a pattern names: the one rule `vgtui.watch(layers=...)` picks modules by and the layer table's `/`
filter shows rows by. A pattern is a layer's exact name or a glob (`layer3.*.conv2`, `fc[1-3]`, `*conv*`), matched
case-sensitively against the whole name (fnmatch.fnmatchcase)."""

from __future__ import annotations

import fnmatch
import re


def matches(name: str, pattern: str) -> bool:
    """Whether `pattern` (an exact name or a glob) names the layer `name`."""
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def patterns(text: str) -> list[str]:
    """The patterns a person typed: separated by spaces or commas ("fc1, layer4.*" is two)."""
    return [p for p in re.split(r"[\s,]+", text) if p]


def select(names, text: str) -> list[str]:
    """The names matched by any pattern of `text`, in their order; every name when `text` holds none."""
    ps = patterns(text)
    return [n for n in names if not ps or any(matches(n, p) for p in ps)]
