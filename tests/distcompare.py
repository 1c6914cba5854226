"""Field-by-field comparison of two metrics files' snapshots (tests/test_fsdp.py, tests/test_torchrun.py)."""

from __future__ import annotations

import dataclasses
import math

from vgtui.core.records import Hist

REL, ABS = 1e-5, 1e-7


def differences(a, b) -> list[str]:
    """Every field of every layer of every snapshot of runs `a` and `b` that differs: numbers by more than REL
    relative (ABS absolute, for the fields that are near zero: a tanh layer's mean), histograms at all."""
    out = []
    if [s.step for s in a.snapshots] != [s.step for s in b.snapshots]:
        return [f"steps {[s.step for s in a.snapshots]} != {[s.step for s in b.snapshots]}"]
    for sa, sb in zip(a.snapshots, b.snapshots):
        if not math.isclose(sa.loss, sb.loss, rel_tol=REL, abs_tol=ABS):
            out.append(f"step {sa.step} loss {sa.loss} != {sb.loss}")
        if [l.name for l in sa.layers] != [l.name for l in sb.layers]:
            out.append(f"step {sa.step} layers differ")
            continue
        for la, lb in zip(sa.layers, sb.layers):
            for f in dataclasses.fields(la):
                va, vb = getattr(la, f.name), getattr(lb, f.name)
                where = f"step {sa.step} {la.name}.{f.name}"
                if isinstance(va, Hist) or isinstance(vb, Hist):
                    if va is None or vb is None:
                        out.append(f"{where}: {va} vs {vb}")
                    elif (list(va.counts) != list(vb.counts) or (va.under, va.over, va.zeros)
                          != (vb.under, vb.over, vb.zeros) or list(va.edges) != list(vb.edges)):
                        out.append(f"{where}: {list(va.counts)} {va.under} {va.over} vs "
                                   f"{list(vb.counts)} {vb.under} {vb.over}")
                elif isinstance(va, float) or isinstance(vb, float):
                    if va is None or vb is None or not (
                            math.isclose(va, vb, rel_tol=REL, abs_tol=ABS) or (math.isnan(va) and math.isnan(vb))):
                        out.append(f"{where}: {va} vs {vb}")
                elif va != vb:
                    out.append(f"{where}: {va!r} vs {vb!r}")
    return out
