"""The compliance page of the staff admin (/admin/compliance/): deadlines kept, per destination and rule.

Figures come from reporting/compliance.py; this module reads the period from the query string and
draws the chart as inline SVG (no JavaScript), with the same figures in a table beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from reporting.admin.clock import humanize_duration
from reporting.compliance import ComplianceRow, compliance_by_destination

PRESETS = {"7": 7, "30": 30, "90": 90}
MAX_CUSTOM_DAYS = 731
EARLIEST = date(2000, 1, 1)


class PeriodForm(forms.Form):
    period = forms.ChoiceField(
        choices=[("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days"), ("custom", "From … to …")],
        required=False, initial="30",
    )
    # Whole UTC days, `to` included: people think of "1 to 31 March", not of half-open intervals.
    date_from = forms.DateField(required=False, label="From", input_formats=["%Y-%m-%d"],
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To (inclusive)", input_formats=["%Y-%m-%d"],
                              widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, today: date, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.today = today

    def clean(self) -> dict:
        cleaned = super().clean()
        period = cleaned.get("period") or "30"
        cleaned["period"] = period
        if period != "custom":
            if cleaned.get("date_from") or cleaned.get("date_to"):
                raise forms.ValidationError("Choose “From … to …” to give your own dates, or clear them.")
            return cleaned
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if self.errors:
            return cleaned
        if start is None or end is None:
            raise forms.ValidationError("A custom period needs both a From and a To date (YYYY-MM-DD).")
        if start > end:
            raise forms.ValidationError("From must be on or before To.")
        if start < EARLIEST:
            raise forms.ValidationError(f"From must be on or after {EARLIEST.isoformat()}.")
        if start > self.today:
            raise forms.ValidationError("From cannot be in the future.")
        if (end - start).days + 1 > MAX_CUSTOM_DAYS:
            raise forms.ValidationError(f"A custom period can cover at most {MAX_CUSTOM_DAYS} days.")
        return cleaned

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) as aware UTC datetimes."""
        period = self.cleaned_data["period"]
        if period in PRESETS:
            return now - timedelta(days=PRESETS[period]), now
        start = datetime.combine(self.cleaned_data["date_from"], time.min, tzinfo=UTC)
        end = datetime.combine(self.cleaned_data["date_to"] + timedelta(days=1), time.min, tzinfo=UTC)
        return start, end


def compliance_view(request: HttpRequest) -> TemplateResponse:
    from django.contrib import admin

    # The figures span every destination: only staff who may read reports see them.
    if not request.user.has_perm("reporting.view_report"):
        raise PermissionDenied("Viewing reports is needed for the compliance page.")
    now = timezone.now()
    form = PeriodForm(request.GET or None, today=now.date())
    context = {**admin.site.each_context(request), "title": "Compliance", "form": form, "now": now}
    if request.GET and not form.is_valid():
        return TemplateResponse(request, "admin/reporting/compliance.html", context, status=400)
    if not request.GET:
        form = PeriodForm({"period": "30"}, today=now.date())
        form.is_valid()
        context["form"] = form
    start, end = form.bounds(now)
    destinations = compliance_by_destination(start=start, end=end, now=now)
    rows = [row for d in destinations for row in (d.total, *d.rules)]
    context.update(start=start, end=end, table=[table_row(row) for row in rows], chart=chart_bars(rows))
    return TemplateResponse(request, "admin/reporting/compliance.html", context)


def table_row(row: ComplianceRow) -> dict:
    def duration(seconds: float | None) -> str:
        return "—" if seconds is None else humanize_duration(timedelta(seconds=seconds))

    rate = row.on_time_rate
    return {
        "row": row, "is_total": row.rule_id is None,
        "rate": "no stage fell due" if rate is None else f"{rate:.0%} ({row.on_time} of {row.due_in_period})",
        "median": duration(row.median_seconds), "worst": duration(row.worst_seconds),
    }


# --- chart ---------------------------------------------------------------------------------------
BAR_LEFT = 260
BAR_WIDTH = 360
ROW_HEIGHT = 28


@dataclass(frozen=True)
class Bar:
    y: int
    label: str
    is_total: bool
    on_time_width: float
    late_width: float
    text: str


def chart_bars(rows: list[ComplianceRow]) -> dict:
    """Geometry of one horizontal bar per destination (bold) and rule: on time solid, late hatched, with
    the figure written at the end of the bar, so neither colour nor length alone carries the meaning."""
    bars = []
    for index, row in enumerate(rows):
        label = row.destination if row.rule_id is None else f"  {row.rule}"
        rate = row.on_time_rate
        if rate is None:
            text = "no stage fell due"
            on_time = late = 0.0
        else:
            text = f"{rate:.0%} on time ({row.on_time} of {row.due_in_period}; {row.late} late)"
            on_time = BAR_WIDTH * row.on_time / row.due_in_period
            late = BAR_WIDTH - on_time
        bars.append(Bar(y=index * ROW_HEIGHT + 30, label=label[:40], is_total=row.rule_id is None,
                        on_time_width=round(on_time, 1), late_width=round(late, 1), text=text))
    return {"bars": bars, "height": len(bars) * ROW_HEIGHT + 40, "bar_left": BAR_LEFT, "bar_width": BAR_WIDTH,
            "text_x": BAR_LEFT + BAR_WIDTH + 8, "width": BAR_LEFT + BAR_WIDTH + 330}
