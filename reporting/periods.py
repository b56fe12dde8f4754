"""Digest periods: pure functions over aware datetimes, aligned in UTC.

A weekly period runs from Monday 00:00 UTC to the next Monday 00:00 UTC; a monthly one from the 1st at
00:00 UTC to the 1st of the next month. Periods are half-open, [start, end): an incident at exactly
the end belongs to the next period. Table-tested in tests/reporting/test_digests.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from reporting.choices import DigestPeriod


@dataclass(frozen=True)
class Period:
    kind: str
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def label(self) -> str:
        if self.kind == DigestPeriod.WEEKLY:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.start:%Y-%m}"


def period_containing(kind: str, moment: datetime) -> Period:
    if moment.tzinfo is None:
        raise ValueError("digest periods need an aware datetime")
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == DigestPeriod.WEEKLY:
        start = midnight - timedelta(days=midnight.weekday())
        return Period(kind, start, start + timedelta(days=7))
    if kind == DigestPeriod.MONTHLY:
        start = midnight.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return Period(kind, start, end)
    raise ValueError(f"unknown digest period {kind!r}")


def period_after(period: Period) -> Period:
    return period_containing(period.kind, period.end)
