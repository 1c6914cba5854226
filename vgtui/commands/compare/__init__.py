"""`vgtui compare`: several configurations trained one after another with the same seed and the same data order,
then one table: the gradient ratio, the per-layer gradient factor, the diagnosis (the run's verdict,
diagnosis.judge_run, as --headless, replay and the UI say it) and the layer it names, saturation and dead units
per layer, accuracy and speed, and for the presets taken from papers, the paper's figure beside ours.

A SPEC names a configuration in words joined by "+": `sigmoid`, `relu+kaiming`, `sigmoid+bn`,
`relu+kaiming+depth30`, `softsign+xavier+lr0.1`. The modules, by concern:

- `spec`: the SPEC grammar, and the arguments turned into the configurations to run (`plan`, refusing a bad one);
- `presets`: the comparisons from the seed's article and the papers, with the papers' figures;
- `collect`: the runs, one after another, boiled down to a `Result` each and a `Row` per configuration (stopped
  by a signal: what finished, the running configuration's finished seeds as a partial row), and the progress bars;
- `table`: the table as text, JSON or CSV;
- `files`: `vgtui compare FILE...`, the table from metrics files already written (`--metrics-dir`'s): each run
  through the same Collector, one row per run and per fork's branch, nothing trained;
- `command`: the parser (the --help text) and `main`.

Parsing, presets, the files and the table import no torch (a bad SPEC is refused at once); the runs import the
engine.
"""

from vgtui.commands.compare.collect import Collector, Progress, Result, Row, check_metrics_dir, metrics_path, run_all
from vgtui.commands.compare.command import DESCRIPTION, build_parser, main
from vgtui.commands.compare.files import check_file, is_file_arg, read_files
from vgtui.commands.compare.presets import COMPARE_DEFAULTS, PRESETS, Preset
from vgtui.commands.compare.spec import GRAMMAR, Plan, Refused, SpecError, base_config, label, parse_spec, plan
from vgtui.commands.compare.table import format_csv, format_json, format_text, row_cells, setup_line

__all__ = ["COMPARE_DEFAULTS", "DESCRIPTION", "GRAMMAR", "PRESETS", "Collector", "Plan", "Preset", "Progress",
           "Refused", "Result", "Row", "SpecError", "base_config", "build_parser", "check_file", "check_metrics_dir",
           "format_csv", "format_json", "format_text", "is_file_arg", "label", "main", "metrics_path", "parse_spec",
           "plan", "read_files", "row_cells", "run_all", "setup_line"]
