"""The comparison's table: as text (aligned columns, then notes on our setup and the paper's), as JSON or as CSV
(the same named values per row), with the extra columns a preset's view adds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from typing import Any

from vgtui.commands.compare.collect import Row
from vgtui.commands.compare.presets import Preset
from vgtui.core.config import RunConfig, shapes_text
from vgtui.core.summary import median_finite


def _sample(values: list, n: int = 5) -> list:
    """All values for up to 6 layers, else n evenly spaced ones, first and last included."""
    if len(values) <= 6:
        return list(values)
    return [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)]


def _layers_note(depth: int) -> str:
    if depth <= 6:
        return ""
    idx = _sample(list(range(1, depth + 1)))
    return f"per-layer cells show layers {', '.join(f'fc{i}' for i in idx)} of {depth}"


def _spread(values: list[float], fmt: str) -> str:
    """The median, and the range when there are several seeds: '0.91 (0.89-0.93)'."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    med = fmt.format(statistics.median(finite))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(finite))}..{fmt.format(max(finite))})"


def _ints(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in _sample(values)) if values else "-"


def _g(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}g}" if math.isfinite(v) else "nan"


def _diagnoses(row: Row) -> str:
    """The row's diagnoses, each once, in the order of its seeds: 'HEALTHY/LOSS RISING'."""
    said = [r.diagnosis for r in row.results]
    return "/".join(sorted({d for d in said if d}, key=said.index))


def _once(said: list[str], sep: str = "/") -> str:
    """Each non-empty value once, in the order of the seeds."""
    return sep.join(sorted({d for d in said if d}, key=said.index))


def _worst(row: Row) -> str:
    return _once([r.worst_layer for r in row.results])


def _lines(row: Row) -> str:
    """The verdicts' lines, each once ("fc1: gets 1/9,100 of fc6's gradient, update:data 3.1e-06")."""
    return _once([r.verdict_line for r in row.results], " / ")


def row_cells(row: Row, preset: Preset | None) -> dict[str, Any]:
    """The row as named values (JSON/CSV) in the table's order."""
    rs = row.results
    d: dict[str, Any] = {
        "configuration": row.label,
        "seeds": [r.seed for r in rs],
        "status": "/".join(sorted({r.status for r in rs})),
        "ratio": median_finite([r.ratio for r in rs]),
        "ratio_range": [min(r.ratio for r in rs), max(r.ratio for r in rs)],
        "diagnosis": _diagnoses(row),
        "saturated_pct": row.med_list("saturated"),
        "dead_pct": row.med_list("dead"),
        "train_acc": median_finite([r.train_acc for r in rs]),
        "test_acc": median_finite([r.test_acc for r in rs]),
        "test_acc_range": [min(r.test_acc for r in rs), max(r.test_acc for r in rs)],
        "steps": max(r.steps for r in rs),
        "steps_per_s": median_finite([r.steps_per_s for r in rs]),
        "partial": row.partial,
        "worst_layer": _worst(row),
        "verdict_line": _lines(row),
        "factor": median_finite([r.factor for r in rs]),
        "deriv_mean": median_finite([r.deriv_mean for r in rs]),
        "regimes": rs[0].regimes,
    }
    if preset is not None and preset.view == "layers":
        d["layer_ratio"] = row.med_list("layer_ratio")
    if preset is not None and preset.view == "actstats":
        d["act_mean"], d["act_std"] = row.med_list("act_mean"), row.med_list("act_std")
        d["act_mean_end"], d["act_std_end"] = row.med_list("act_mean_end"), row.med_list("act_std_end")
    if preset is not None and preset.view == "pre":
        d["pre_drift"] = median_finite([r.pre_drift for r in rs])
        d["pre_last"] = [list(p) for p in rs[0].pre_last]
    if preset is not None and preset.paper:
        d["paper"] = preset.paper_values.get(row.label, "")
    return d


def _text_columns(rows: list[Row], preset: Preset | None) -> tuple[list[str], list[list[str]]]:
    head = ["configuration", "fc1/last", "factor/layer", "diagnosis", "worst layer", "saturated % per layer",
            "dead % per layer", "train acc", "test acc", "steps/s"]
    out = []
    for row in rows:
        rs = row.results
        cells = [row.label, _spread([r.ratio for r in rs], "{:.1e}"), _spread([r.factor for r in rs], "{:.2f}"),
                 _diagnoses(row) or "-", _worst(row) or "-", _ints(row.med_list("saturated")),
                 _ints(row.med_list("dead")),
                 _spread([r.train_acc for r in rs], "{:.2f}"), _spread([r.test_acc for r in rs], "{:.2f}"),
                 _spread([r.steps_per_s for r in rs], "{:.0f}")]
        if any(r.status != "completed" for r in rs):
            cells[0] += f" ({'/'.join(sorted({r.status for r in rs}))})"
        if row.partial:
            cells[0] += f" (partial: {len(rs)} of {row.planned} seeds)"
        out.append(cells)
    if preset is not None and preset.view == "layers":
        head.append("grad norm / output layer's, per hidden layer")
        for cells, row in zip(out, rows):
            cells.append(" ".join(f"{v:.0e}" for v in _sample(row.med_list("layer_ratio")[:-1])))  # hidden
    if preset is not None and preset.view == "actstats":
        head += ["act mean, step 1", "act std, step 1", "act mean, end", "act std, end"]
        for cells, row in zip(out, rows):
            cells += [" ".join(_g(v, 2) for v in _sample(row.med_list(k)))
                      for k in ("act_mean", "act_std", "act_mean_end", "act_std_end")]
    if preset is not None and preset.view == "pre":
        head += ["z drift", "z p15/p50/p85 at the end, per layer"]
        for cells, row in zip(out, rows):
            cells += [_spread([r.pre_drift for r in row.results], "{:.2f}"),
                      "  ".join("/".join(_g(v, 2) for v in p) for p in row.results[0].pre_last)]
    if preset is not None and preset.view == "err":
        head.append("test err %")
        for cells, row in zip(out, rows):
            cells.append(_spread([100 * (1 - r.test_acc) for r in row.results], "{:.1f}"))
    if preset is not None and preset.paper:
        head.append(preset.paper)
        for cells, row in zip(out, rows):
            cells.append(preset.paper_values.get(row.label, ""))
    return head, out


def format_text(rows: list[Row], preset: Preset | None, setup: str, depth: int) -> str:
    head, body = _text_columns(rows, preset)
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines = [line(head), line(["-" * w for w in widths])] + [line(c) for c in body]
    notes = [f"ours: {setup}"]
    if preset is not None and preset.paper:
        notes.append(f"paper: {preset.paper_setup}")
    if _layers_note(depth):
        notes.append(_layers_note(depth))
    if preset is not None and preset.view == "pre":
        notes.append("z drift: the farthest the 15th/50th/85th percentiles of a hidden layer's pre-activation moved "
                     "from their first snapshot, in units of its first p85-p15 spread (Ioffe & Szegedy's Fig. 1)")
    notes.append("fc1/last: median over snapshots of fc1's weight-gradient norm over the output layer's; "
                 "saturated/dead % at the last snapshot")
    notes.append("factor/layer: median over snapshots of what the gradient is multiplied by from one layer down to the "
                 "next (the geometric mean over the layers)")
    notes.append("diagnosis: every layer judged, the worst of the layers and of the loss; worst layer: the one the "
                 "verdict names; why (docs/compare.md#the-diagnosis):")
    notes += [f"  {row.label}: {_lines(row)}" for row in rows if _lines(row)]
    return "\n".join(lines + [""] + notes) + "\n"


def format_json(rows: list[Row], preset: Preset | None, name: str | None, setup: str) -> str:
    doc = {"preset": name, "setup": setup, "paper_setup": preset.paper_setup if preset and preset.paper else None,
           "rows": [row_cells(r, preset) for r in rows]}
    return json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n"


def _clean(o: Any) -> Any:
    """NaN and infinities as null: strict JSON that any parser reads."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def format_csv(rows: list[Row], preset: Preset | None) -> str:
    buf = io.StringIO()
    dicts = [row_cells(r, preset) for r in rows]
    if not dicts:
        return ""
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(dicts[0]))
    for d in dicts:
        w.writerow([" ".join(_csv_cell(x) for x in v) if isinstance(v, list) else _csv_cell(v) for v in d.values()])
    return buf.getvalue()


def _csv_cell(v: Any) -> str:
    if isinstance(v, list):
        return "/".join(_csv_cell(x) for x in v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return "" if v is None else str(v)


def setup_line(cfg: RunConfig, configs: list[RunConfig], seeds: int) -> str:
    """Our setup, for the note under the table (`ours: ...`) and the JSON's "setup"."""
    steps = f"at most {cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"
    arch = shapes_text(configs)
    lrs = "/".join(f"{x:g}" for x in sorted({c.lr for c in configs}))
    optimizers = sorted({c.optimizer for c in configs})
    opts = "/".join(optimizers)
    mom = f" momentum {cfg.momentum:g}" if "sgd" in optimizers else ""
    seed = f"seed {cfg.seed}" if seeds == 1 else f"seeds {cfg.seed}..{cfg.seed + seeds - 1} (median, range)"
    return (f"{cfg.dataset}, {steps}, batch {cfg.batch_size}, {arch}, {opts} lr {lrs}{mom}, {seed}, "
            f"a snapshot every {cfg.probe_every} steps")

