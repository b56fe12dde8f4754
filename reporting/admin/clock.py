"""How the board says how much time a stage has left: "5 h 12 min", "overdue by 2 h", "clock not started"."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils.html import format_html
from django.utils.safestring import SafeString

from reporting.choices import OPEN_REPORT_STATUSES, EscalationLevel, ReportStatus
from reporting.models import Report

# Highest first: what "escalation level reached" shows when a report has several.
_FIXED_RANK = {EscalationLevel.PERMANENT_FAILURE: 1000, EscalationLevel.OVERDUE: 100}


def humanize_duration(delta: timedelta) -> str:
    """Two units at most, rounded down: "3 d 4 h", "5 h 12 min", "7 min", "under 1 min"."""
    minutes = int(abs(delta.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else "under 1 min"


def is_overdue(report: Report, now: datetime) -> bool:
    return report.status in OPEN_REPORT_STATUSES and report.due_at is not None and report.due_at < now


def time_left_html(report: Report, now: datetime) -> SafeString:
    if report.status == ReportStatus.DELIVERED:
        return format_html('<span class="clock-done">delivered{}</span>', " late" if report.late else "")
    if report.status == ReportStatus.WITHDRAWN:
        return format_html('<span class="clock-done">{}</span>', "withdrawn")
    if report.due_at is None:
        return format_html('<span class="clock-waiting">{}</span>', "clock not started")
    if report.due_at < now:
        late_by = humanize_duration(now - report.due_at)
        return format_html('<strong class="clock-overdue">overdue by {}</strong>', late_by)
    return format_html('<span class="clock-left">{}</span>', humanize_duration(report.due_at - now))


def _rank(level: str) -> int:
    if level in _FIXED_RANK:
        return _FIXED_RANK[level]
    try:
        return int(str(level).removeprefix("window_"))
    except ValueError:
        return 0


def highest_escalation(levels: list[str]) -> str:
    """The most serious level raised ("" when none): permanent failure, overdue, then the largest window."""
    if not levels:
        return ""
    top = max(levels, key=_rank)
    try:
        return EscalationLevel(top).label
    except ValueError:
        return top.replace("window_", "") + " % of the window used"
