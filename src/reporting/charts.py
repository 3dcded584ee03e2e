"""The report's PNG charts, drawn with matplotlib (a core dependency; without it the report says how to reinstall).

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
from cvm.utils.errors import reinstall_hint

log = structlog.get_logger(__name__)

CHARTS_HINT = reinstall_hint("matplotlib", "Charts")

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


def dominated(values: Sequence[float], ratio: float = 20.0) -> bool:
    """One bar dwarfs the others (the largest over ``ratio`` times the smallest non-zero): a linear axis would hide them."""
    nonzero = [v for v in values if v > 0]
    return len(nonzero) > 1 and max(nonzero) > ratio * min(nonzero)


def _share(part: int, whole: int) -> str:
    """A share that never reads 0.0% for a bar that is there."""
    pct = 100 * part / whole
    return "<0.1%" if 0 < pct < 0.1 else f"{pct:.1f}%"


def _label_room(ax: Any, longest: float, log: bool) -> None:
    """Room to the right of the longest bar for its label, on a linear or a log axis."""
    if log:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(longest, 1) * 12)
    else:
        ax.set_xlim(0, longest * 1.25 + 0.5)


def _chart_decisions(make: Callable[..., Any], report: Report, path: Path) -> bool:
    rows = list(reversed(report.by_treatment))
    if not rows:
        return False
    fig = make(figsize=(8, 0.45 * len(rows) + 1.8))
    ax = fig.subplots()
    labels = [r.treatment_id for r in rows]
    totals = [r.decisions for r in rows]
    everyone = sum(totals) or 1
    log = dominated(totals)
    left = [0] * len(rows)
    for status, colour in _STATUS_COLOURS.items():
        values = [getattr(r, status) for r in rows]
        ax.barh(labels, values, left=left, color=colour, label=status.replace("_", " "))
        left = [a + b for a, b in zip(left, values)]
    for y, total in enumerate(totals):
        ax.text(total, y, f" {total:,} ({_share(total, everyone)})", va="center", fontsize=8)
    _label_room(ax, max(totals), log)
    ax.set_xlabel("decisions" + (" (log scale: one treatment dominates)" if log else ""))
    ax.set_title(f"Decisions by treatment - run {report.run_id}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    if not log:
        ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)
    return True


def _chart_capacity(make: Callable[..., Any], report: Report, path: Path) -> bool:
    rows = [c for c in report.capacity if c.max_per_day]
    if not rows:
        return False
    many_days = len({c.day for c in rows}) > 1
    rows = list(reversed(rows))
    fig = make(figsize=(8, 0.45 * len(rows) + 1.8))
    ax = fig.subplots()
    labels = [f"{c.treatment_id} ({c.day})" if many_days else c.treatment_id for c in rows]
    cap = [float(c.max_per_day or 1) for c in rows]
    given = [100.0 * c.used_by_run / m for c, m in zip(rows, cap)]
    held = [100.0 * c.held_by_run / m for c, m in zip(rows, cap)]
    # The day's counter counts held units too; what is left of it was taken by other runs.
    others = [100.0 * max(0, c.used - c.used_by_run - c.held_by_run) / m for c, m in zip(rows, cap)]
    ax.barh(labels, [100.0] * len(rows), color="#eeeeee", label="available")
    ax.barh(labels, given, color="#1565c0", label="used by this run")
    ax.barh(labels, held, left=given, color="#ffb300", hatch="//", edgecolor="#8d6e00", label="held for approval (this run)")
    ax.barh(labels, others, left=[a + b for a, b in zip(given, held)], color="#90caf9", label="used by other runs")
    for y, c in enumerate(rows):
        held_text = f", {c.held_by_run:,} held" if c.held_by_run else ""
        ax.text(101, y, f"{c.used:,}/{c.max_per_day:,}{held_text}", va="center", fontsize=8)
    ax.set_xlim(0, 135)
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.set_xlabel("% of the day's capacity")
    day = "" if many_days else f" on {rows[0].day}"
    ax.set_title(f"Capacity used and held against available{day}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    _save(fig, path)
    return True


def _chart_risk(make: Callable[..., Any], report: Report, path: Path) -> bool:
    bins = report.churn_histogram
    if not bins:
        return False
    fig = make(figsize=(7, 3.8))
    ax = fig.subplots()
    centres = [(b.lower + b.upper) / 2 for b in bins]
    below = [b.below for b in bins]
    hot = [b.at_risk for b in bins]
    ax.bar(centres, below, width=0.1, color="#ffb74d", edgecolor="white", label="below the threshold")
    ax.bar(centres, hot, width=0.1, bottom=below, color="#c62828", edgecolor="white", label="at risk")
    threshold = report.high_churn_threshold
    ax.axvline(threshold, color="#424242", linestyle="--", label=f"high-churn threshold {threshold:.2f}")
    heights = [a + b for a, b in zip(below, hot)]
    log = dominated(heights, 50.0)
    if log:
        ax.set_yscale("symlog", linthresh=1)
    unknown = next((b.customers for b in report.risk_distribution if b.band == "unknown"), 0)
    ax.set_xlabel("churn probability" + (f" ({unknown:,} unknown not shown)" if unknown else ""))
    ax.set_ylabel("customers" + (" (log scale)" if log else ""))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(heights + [1]) * (8 if log else 1.15))
    if not log:
        ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Churn-risk distribution - {report.totals.at_risk_customers:,} at risk")
    ax.legend(fontsize=8, loc="upper right")
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


def draw_charts(report: Report, folder: Path) -> tuple[tuple[str, ...], str | None]:
    """Draw the view's PNG charts into ``folder``; (file names, a note when charts could not be drawn)."""
    make = _figure_class()
    if make is None:
        return (), CHARTS_HINT
    if report.view == "portfolio":
        plan = [
            (PORTFOLIO_CHARTS["decisions_by_treatment"], lambda p: _chart_decisions(make, report, p)),
            (PORTFOLIO_CHARTS["capacity_use"], lambda p: _chart_capacity(make, report, p)),
            (PORTFOLIO_CHARTS["risk_distribution"], lambda p: _chart_risk(make, report, p)),
        ]
    else:
        plan = [(f"{file_stem(report)}-options.png", lambda p: _chart_options(make, report, p))]
    return _draw_planned(folder, plan)


def _draw_planned(folder: Path, plan: Sequence[tuple[str, Callable[[Path], bool]]]) -> tuple[tuple[str, ...], str | None]:
    """Draw each (file name, drawer); a drawer with nothing to show removes a stale picture, and a failure costs only its chart."""
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


def _trend_figure(make: Callable[..., Any], trend: Any, path: Path) -> bool:
    runs = trend.runs
    if not runs:
        return False
    fig = make(figsize=(10, 7))
    axes = fig.subplots(2, 2)
    x = list(range(len(runs)))
    names = [s.run_id[-12:] for s in runs]
    contacts, values = axes[0][0], axes[0][1]
    contacts.plot(x, [s.contacts for s in runs], marker="o", label="contacts")
    contacts.plot(x, [s.contacts_now for s in runs], marker=".", linestyle="--", label="live after approvals")
    contacts.set_title("Contacts and capacity use per run")
    use = contacts.twinx()
    use.plot(x, [s.capacity_use_pct if s.capacity_use_pct is not None else float("nan") for s in runs],
             color="#2e7d32", marker="^", label="capacity use (%)")
    use.set_ylim(0, 110)
    use.set_ylabel("% of capacity", fontsize=8)
    use.legend(fontsize=7, loc="lower right")
    values.plot(x, [s.expected_value for s in runs], marker="o", label="expected value")
    measured = [s.measured_value for s in runs]
    if any(m is not None for m in measured):
        values.plot(x, [m if m is not None else float("nan") for m in measured], marker="s", label="measured value")
    else:
        values.text(0.5, 0.92, "measured value: not yet measured", transform=values.transAxes, ha="center", fontsize=8)
    values.set_title(f"Value per run ({runs[-1].currency})")
    churn, approvals = axes[1][0], axes[1][1]
    bands = [b for b in dict.fromkeys(b for s in runs for b in s.churn_bands) if b != "unknown"]
    bottom = [0.0] * len(runs)
    for band in bands:
        share = [100.0 * s.churn_bands.get(band, 0) / (s.customers or 1) for s in runs]
        churn.bar(x, share, bottom=bottom, label=band)
        bottom = [a + b for a, b in zip(bottom, share)]
    churn.set_ylim(0, 100)
    churn.set_title("Churn bands (% of the run's customers)")
    approvals.bar(x, [s.approvals_pending for s in runs], color="#ffb300", label="approval backlog")
    delay = approvals.twinx()
    hours = [s.approval_mean_hours for s in runs]
    delay.plot(x, [h if h is not None else float("nan") for h in hours], color="#6a1b9a", marker="o", label="mean delay (h)")
    delay.set_ylim(0, max([h for h in hours if h is not None] + [1.0]) * 1.2)
    delay.set_ylabel("hours to a decision", fontsize=8)
    if all(h is None for h in hours):
        approvals.text(0.5, 0.9, "no approval decided yet", transform=approvals.transAxes, ha="center", fontsize=8)
    approvals.set_title("Approvals: backlog and delay")
    for ax in (contacts, values, churn, approvals):
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    for ax in (contacts, values, approvals):
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="lower left")
    values.ticklabel_format(axis="y", style="plain", useOffset=False)
    churn.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="churn band", title_fontsize=7)
    delay.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    return True


def draw_trend(trend: Any, folder: Path) -> tuple[tuple[str, ...], str | None]:
    """The KPIs-over-runs chart (``trend.png``) beside the trend report; (file names, a note when it could not be drawn)."""
    make = _figure_class()
    if make is None:
        return (), CHARTS_HINT
    return _draw_planned(folder, [("trend.png", lambda p: _trend_figure(make, trend, p))])
