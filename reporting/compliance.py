"""Selectors for the staff compliance page: how well deadlines are kept, per destination and per rule.

Definitions (also in docs/compliance.md):
- due in the next 24 h: open stages (not delivered, not withdrawn) with ``now <= due_at < now + 24 h``;
- overdue: open stages with ``due_at < now``;
- on-time rate: among stages due in the period whose deadline has passed (``start <= due_at <
  min(end, now)``, withdrawn excluded), the share delivered at or before ``due_at``;
- detection to delivery: for stages delivered in the period (``start <= delivered_at < end``),
  ``delivered_at - incident.detected_at``, median and worst.

Each figure is an aggregate in the database: three queries (rules, per rule, per destination) for
any number of reports. A destination's median is computed over its own deliveries, never from its
rules' medians.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Func, Max, Q

from reporting.choices import OPEN_REPORT_STATUSES, ReportStatus
from reporting.models import Report, ReportingRule

DUE_SOON = timedelta(hours=24)


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set median (``percentile_cont(0.5) WITHIN GROUP``), interpolated like statistics.median."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


class EpochSeconds(Func):
    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


@dataclass
class ComplianceRow:
    destination_id: int
    destination: str
    rule_id: int | None = None  # None for a destination's total
    rule: str = ""
    due_soon: int = 0
    overdue: int = 0
    due_in_period: int = 0
    on_time: int = 0
    delivered_in_period: int = 0
    median_seconds: float | None = None
    worst_seconds: float | None = None

    @property
    def late(self) -> int:
        return self.due_in_period - self.on_time

    @property
    def on_time_rate(self) -> float | None:
        """None when no stage fell due in the period: "no data" is not 0 % and not 100 %."""
        return self.on_time / self.due_in_period if self.due_in_period else None


@dataclass
class DestinationCompliance:
    total: ComplianceRow
    rules: list[ComplianceRow] = field(default_factory=list)


def _counts(*, start: datetime, end: datetime, now: datetime) -> dict:
    decided_end = min(end, now)
    due_in_period = Q(due_at__gte=start, due_at__lt=decided_end) & ~Q(status=ReportStatus.WITHDRAWN)
    return {
        "due_soon": Count("id", filter=Q(status__in=OPEN_REPORT_STATUSES, due_at__gte=now, due_at__lt=now + DUE_SOON)),
        "overdue": Count("id", filter=Q(status__in=OPEN_REPORT_STATUSES, due_at__lt=now)),
        "due_in_period": Count("id", filter=due_in_period),
        "on_time": Count("id", filter=due_in_period & Q(status=ReportStatus.DELIVERED, delivered_at__lte=F("due_at"))),
        "delivered_in_period": Count("id", filter=_delivered_in(start, end)),
    }


def _delivered_in(start: datetime, end: datetime) -> Q:
    return Q(status=ReportStatus.DELIVERED, delivered_at__gte=start, delivered_at__lt=end)


def _detection_to_delivery() -> ExpressionWrapper:
    return ExpressionWrapper(F("delivered_at") - F("incident__detected_at"), output_field=DurationField())


def _grouped(keys: tuple[str, ...], *, start: datetime, end: datetime, now: datetime) -> dict[tuple, dict]:
    """One aggregate query grouped by ``keys``; on SQLite the median needs one more (see _sqlite_medians)."""
    aggregates = _counts(start=start, end=end, now=now)
    delivered = _delivered_in(start, end)
    if connection.vendor == "postgresql":
        seconds = EpochSeconds(_detection_to_delivery())
        aggregates["median_seconds"] = PercentileCont(seconds, filter=delivered)
        aggregates["worst_seconds"] = Max(seconds, filter=delivered)
    rows = Report.objects.order_by().values(*keys).annotate(**aggregates)
    result = {tuple(row[k] for k in keys): row for row in rows}
    if connection.vendor != "postgresql":
        for key, (median, worst) in _sqlite_medians(keys, delivered).items():
            result[key].update(median_seconds=median, worst_seconds=worst)
    return result


def _sqlite_medians(keys: tuple[str, ...], delivered: Q) -> dict[tuple, tuple[float, float]]:
    """SQLite (the `make run` default) has no percentile_cont: one query fetches the durations of the
    period's deliveries and Python takes the median. Still one query however many reports there are."""
    durations: dict[tuple, list[float]] = defaultdict(list)
    rows = Report.objects.filter(delivered).order_by().values_list(*keys, "delivered_at", "incident__detected_at")
    for *key, delivered_at, detected_at in rows:
        durations[tuple(key)].append((delivered_at - detected_at).total_seconds())
    return {key: median_and_worst(values) for key, values in durations.items()}


def median_and_worst(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def compliance_by_destination(*, start: datetime, end: datetime, now: datetime) -> list[DestinationCompliance]:
    """Every destination with its rules (also those without any stage yet), in name order."""
    if start >= end:
        raise ValueError("the period must end after it starts")
    per_rule = _grouped(("destination_id", "rule_id"), start=start, end=end, now=now)
    per_destination = _grouped(("destination_id",), start=start, end=end, now=now)
    result: dict[int, DestinationCompliance] = {}
    for rule in ReportingRule.objects.select_related("destination").order_by("destination__name", "name", "id"):
        destination = rule.destination
        if destination.pk not in result:
            result[destination.pk] = DestinationCompliance(
                total=_row(per_destination.get((destination.pk,)), destination_id=destination.pk,
                           destination=destination.name)
            )
        result[destination.pk].rules.append(_row(
            per_rule.get((destination.pk, rule.pk)), destination_id=destination.pk, destination=destination.name,
            rule_id=rule.pk, rule=rule.name,
        ))
    return list(result.values())


_FIGURES = ("due_soon", "overdue", "due_in_period", "on_time", "delivered_in_period", "median_seconds",
            "worst_seconds")


def _row(values: dict | None, **identity) -> ComplianceRow:
    row = ComplianceRow(**identity)
    for name in _FIGURES:
        if values and values.get(name) is not None:
            setattr(row, name, values[name])
    return row
