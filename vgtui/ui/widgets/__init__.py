"""The panels of a run screen, one module each. Each panel is handed a frozen `RunView` (the runs' RunStates and
the view options, built by the screen each frame), never reads a screen, and redraws only when what it shows (its
`key`) changed: the screen's frame timer calls `update_key(view)` at most --fps times a second.

- base.py: RunView, Panel (the cache), PlotextPanel and the figures it draws (loss, curves, histograms)
- status.py: the three status lines and the verdict badge
- bars.py: the gradient bars (BarRow: one typed row per layer or group)
- activations.py: the activation histograms
- table.py: the layer table (cursor, sort, filter)
- layer_history.py: one layer's history (the table's enter)
- why.py: the mechanism: each layer's factor, its derivative's part and its weights' part
"""

from vgtui.ui.widgets.activations import ActivationPanel
from vgtui.ui.widgets.bars import BarRow, GradientBars, group_rows
from vgtui.ui.widgets.base import (Panel, PlotextPanel, RunView, abbreviate, flow_figure, hist_all_figure,
                                   hist_grid_figure, hist_key, label_width, loss_figure, markup, run_label,
                                   TableView)
from vgtui.ui.widgets.layer_history import LayerHistory
from vgtui.ui.widgets.status import StatusBar, position
from vgtui.ui.widgets.table import LayerTable
from vgtui.ui.widgets.why import WhyPanel

__all__ = ["ActivationPanel", "BarRow", "GradientBars", "LayerHistory", "LayerTable", "Panel", "PlotextPanel", "RunView",
           "StatusBar", "TableView", "abbreviate", "flow_figure", "group_rows", "hist_all_figure", "hist_grid_figure", "hist_key",
           "label_width", "loss_figure", "markup", "position", "run_label", "WhyPanel"]
