"""The report's PNG charts, drawn with matplotlib when it is installed (``pip install 'cvm[report]'``).

matplotlib is imported on first use, inside ``_figure_class``, never when
this module is imported, so the base install (without it) still writes the
Markdown and JSON, which then say how to get the charts.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from cvm.reporting.model import PORTFOLIO_CHARTS, Report, file_stem

log = structlog.get_logger(__name__)

CHARTS_HINT = "Charts need matplotlib: pip install 'cvm[report]'"

_CHART_LOCK = threading.Lock()
_STATUS_COLOURS = {"success": "#2e7d32", "pending_approval": "#0277bd", "no_action": "#9e9e9e"}


def _figure_class() -> Any | None:
    """matplotlib's Figure with the Agg canvas, imported on first use; None when matplotlib is not installed."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    def make(**kwargs: Any) -> Any:
        fig = Figure(**kwargs)
        FigureCanvasAgg(fig)
        return fig

    return make


def _save(fig: Any, path: Path) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp.png"
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _chart_decisions(make: Callable[..., Any], report: Report, path: Path) -> bool:
    rows = list(reversed(report.by_treatment))
    if not rows:
        return False
    fig = make(figsize=(8, 0.45 * len(rows) + 1.6))
    ax = fig.subplots()
    labels = [r.treatment_id for r in rows]
    left = [0] * len(rows)
    for status, colour in _STATUS_COLOURS.items():
        values = [getattr(r, status) for r in rows]
        ax.barh(labels, values, left=left, color=colour, label=status.replace("_", " "))
        left = [a + b for a, b in zip(left, values)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total}", va="center", fontsize=8)
    ax.set_xlim(0, max(left) * 1.12 + 0.5)
    ax.set_xlabel("decisions")
    ax.set_title(f"Decisions by treatment - run {report.run_id}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)
    return True


def _chart_capacity(make: Callable[..., Any], report: Report, path: Path) -> bool:
    rows = [c for c in report.capacity if c.max_per_day]
    if not rows:
        return False
    many_days = len({c.day for c in rows}) > 1
    rows = list(reversed(rows))
    fig = make(figsize=(8, 0.45 * len(rows) + 1.6))
    ax = fig.subplots()
    labels = [f"{c.treatment_id} ({c.day})" if many_days else c.treatment_id for c in rows]
    used = [100.0 * c.used / c.max_per_day for c in rows]  # type: ignore[operator]
    by_run = [100.0 * (c.used_by_run + c.held_by_run) / c.max_per_day for c in rows]  # type: ignore[operator]
    ax.barh(labels, [100.0] * len(rows), color="#eeeeee", label="available")
    ax.barh(labels, used, color="#90caf9", label="used (all runs)")
    ax.barh(labels, by_run, color="#1565c0", label="this run")
    for y, c in enumerate(rows):
        ax.text(101, y, f"{c.used}/{c.max_per_day}", va="center", fontsize=8)
    ax.set_xlim(0, 118)
    ax.set_xlabel("% of the day's capacity")
    day = "" if many_days else f" on {rows[0].day}"
    ax.set_title(f"Capacity used against available{day}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    _save(fig, path)
    return True


def _chart_risk(make: Callable[..., Any], report: Report, path: Path, values: Sequence[float]) -> bool:
    fig = make(figsize=(7, 3.8))
    ax = fig.subplots()
    bins = [i / 10 for i in range(11)]
    threshold = report.high_churn_threshold
    below = [v for v in values if v < threshold]
    above = [v for v in values if v >= threshold]
    ax.hist([below, above], bins=bins, stacked=True, color=["#ffb74d", "#c62828"], edgecolor="white",
            label=["below the threshold", "at risk"])
    ax.axvline(threshold, color="#424242", linestyle="--", label=f"high-churn threshold {threshold:.2f}")
    unknown = next((b.customers for b in report.risk_distribution if b.band == "unknown"), 0)
    ax.set_xlabel("churn probability" + (f" ({unknown} unknown not shown)" if unknown else ""))
    ax.set_ylabel("customers")
    ax.set_xlim(0, 1)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Churn-risk distribution - {report.totals.at_risk_customers} at risk")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _chart_options(make: Callable[..., Any], report: Report, path: Path) -> bool:
    c = report.customer
    d = c.decision if c else None
    if not d:
        return False
    options = []
    if d.get("status") != "no_action" and d.get("expected_value") is not None:
        options.append((f"{d['selected_treatment']} (chosen)", d["expected_value"], "#2e7d32"))
    options += [
        (f"{a['treatment_id']} ({a['reason'].replace('_', ' ')})", a["expected_value"], "#9e9e9e")
        for a in d.get("alternatives", ()) if a.get("expected_value") is not None
    ]
    if not options:
        return False
    options.reverse()
    fig = make(figsize=(8, 0.4 * len(options) + 1.6))
    ax = fig.subplots()
    ax.barh([o[0] for o in options], [o[1] for o in options], color=[o[2] for o in options])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"expected value ({report.currency})")
    ax.set_title(f"Options considered for {c.customer_id}")  # type: ignore[union-attr]
    _save(fig, path)
    return True


def draw_charts(report: Report, folder: Path, churn_values: Sequence[float]) -> tuple[tuple[str, ...], str | None]:
    """Draw the view's PNG charts into ``folder``; (file names, a note when charts could not be drawn)."""
    make = _figure_class()
    if make is None:
        return (), CHARTS_HINT
    if report.view == "portfolio":
        plan = [
            (PORTFOLIO_CHARTS["decisions_by_treatment"], lambda p: _chart_decisions(make, report, p)),
            (PORTFOLIO_CHARTS["capacity_use"], lambda p: _chart_capacity(make, report, p)),
            (PORTFOLIO_CHARTS["risk_distribution"], lambda p: _chart_risk(make, report, p, churn_values)),
        ]
    else:
        plan = [(f"{file_stem(report)}-options.png", lambda p: _chart_options(make, report, p))]
    drawn, failed = [], []
    with _CHART_LOCK:
        for name, draw in plan:
            path = folder / name
            try:
                if draw(path):
                    drawn.append(name)
                else:
                    path.unlink(missing_ok=True)  # nothing to show this time: no stale picture beside the report
            except Exception as exc:  # a chart must never cost the report itself
                log.warning("report_chart_failed", chart=name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
                failed.append(name)
    note = f"Chart(s) {', '.join(failed)} could not be drawn; see logs/cvm.log." if failed else None
    return tuple(drawn), note
