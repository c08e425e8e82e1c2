"""Front-end rendering: terminal tables and plots over plain data.

``report`` knows nothing of the model's internals: callers hand it rows and
series of plain values (it is a sibling of ``cost``, not a user of it).
"""

from __future__ import annotations

from .cost import plot_fit_set, plot_fork_table
from .op_bench import fmt_change_count, plot_op_bench, render_op_bench
from .plot import PLOT_FORMATS, Panel, plot_panels, plot_series
from .table import fmt_ns, fmt_ns_pair, fmt_pct, fmt_us, render_table

__all__ = [
    "render_table",
    "fmt_pct",
    "fmt_us",
    "fmt_ns",
    "fmt_ns_pair",
    "fmt_change_count",
    "plot_series",
    "plot_panels",
    "Panel",
    "PLOT_FORMATS",
    "plot_fork_table",
    "plot_fit_set",
    "render_op_bench",
    "plot_op_bench",
]
