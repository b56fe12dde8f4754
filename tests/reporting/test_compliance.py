"""The compliance page: on time vs late, overdue, due soon, detection-to-delivery, per destination and rule.

Time is controlled: the selector takes ``now``; the page's clock is patched. Each incident's stages are
set directly (test arrangement, not a state change under test) so that exactly one stage counts.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from incidents.models import AuditEvent
from reporting.choices import ReportStatus
from reporting.compliance import compliance_by_destination, median_and_worst
from reporting.models import Report
from tests.conftest import make_incident
from tests.reporting.conftest import make_destination

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
PAGE = "admin:compliance"


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def stage(destination, *, severity: str = "SEV-1", detected: datetime, due: datetime, status: str = "pending",
          delivered: datetime | None = None) -> Report:
    """One counted stage for ``destination``: the incident's other stages are withdrawn (never counted)."""
    incident = make_incident(severity=severity, detected_at=NOW - hours(1))
    incident.__class__.objects.filter(pk=incident.pk).update(detected_at=detected)
    arranger, _ = get_user_model().objects.get_or_create(username="arranger")
    withdrawn = {"withdrawn_by": arranger, "withdrawn_at": NOW, "withdrawn_reason": "test arrangement"}
    reports = Report.objects.filter(incident=incident, destination=destination).order_by("due_at", "id")
    counted = reports.first()
    Report.objects.filter(incident=incident).exclude(pk=counted.pk).update(status=ReportStatus.WITHDRAWN, **withdrawn)
    Report.objects.filter(pk=counted.pk).update(
        status=status, due_at=due, delivered_at=delivered, payload_sha256="0" * 64 if delivered else "",
        **(withdrawn if status == ReportStatus.WITHDRAWN else {}),
    )
    return Report.objects.get(pk=counted.pk)


def figures(destination_name: str, rule_name: str | None = None, *, days: int = 30, now: datetime = NOW):
    for item in compliance_by_destination(start=now - timedelta(days=days), end=now, now=now):
        if item.total.destination == destination_name:
            if rule_name is None:
                return item.total
            return next(row for row in item.rules if row.rule == rule_name)
    raise AssertionError(f"no destination {destination_name}")


def test_on_time_late_and_overdue_are_told_apart(default_destination):
    detected = NOW - timedelta(days=5)
    stage(default_destination, detected=detected, due=NOW - timedelta(days=4), status="delivered",
          delivered=NOW - timedelta(days=4))  # exactly at the deadline: on time
    stage(default_destination, detected=detected, due=NOW - timedelta(days=4), status="delivered",
          delivered=NOW - timedelta(days=4) + timedelta(seconds=1))  # a second late
    stage(default_destination, detected=detected, due=NOW - hours(2), status="pending")  # overdue, counts as late
    stage(default_destination, detected=detected, due=NOW - hours(3), status="failed")  # failed is open too
    row = figures("authority-a")
    assert (row.due_in_period, row.on_time, row.late) == (4, 1, 3)
    assert row.on_time_rate == 0.25
    assert row.overdue == 2 and row.due_soon == 0


def test_due_in_the_next_24_hours_counts_open_stages_only(default_destination):
    detected = NOW - hours(1)
    stage(default_destination, detected=detected, due=NOW + hours(1))
    stage(default_destination, detected=detected, due=NOW + hours(23.9), status="awaiting_approval")
    stage(default_destination, detected=detected, due=NOW + hours(24))  # the window is [now, now + 24 h)
    stage(default_destination, detected=detected, due=NOW + hours(2), status="delivered", delivered=NOW)
    row = figures("authority-a")
    assert row.due_soon == 2 and row.overdue == 0
    # Stages due later than now are not decided yet: delivered early, one of them is not "on time" yet.
    assert row.due_in_period == 0 and row.on_time_rate is None


def test_withdrawn_stages_are_excluded_from_every_figure(default_destination):
    stage(default_destination, detected=NOW - timedelta(days=3), due=NOW - timedelta(days=2), status="withdrawn")
    stage(default_destination, detected=NOW - hours(1), due=NOW + hours(2), status="withdrawn")
    row = figures("authority-a")
    assert (row.due_in_period, row.overdue, row.due_soon, row.delivered_in_period) == (0, 0, 0, 0)
    assert row.on_time_rate is None and row.median_seconds is None and row.worst_seconds is None


def test_no_data_is_no_rate_not_zero_or_full(default_destination):
    row = figures("authority-a")
    assert row.on_time_rate is None and row.median_seconds is None
    assert compliance_by_destination(start=NOW - timedelta(days=7), end=NOW, now=NOW)[0].rules  # rules still listed


def test_detection_to_delivery_median_and_worst_over_deliveries_in_the_period(default_destination):
    for taken in (1, 2, 3, 10):
        detected = NOW - timedelta(days=2)
        stage(default_destination, detected=detected, due=detected + hours(24), status="delivered",
              delivered=detected + hours(taken))
    # Delivered before the period: not counted in the times, nor in the rate (due before the period too).
    old = NOW - timedelta(days=40)
    stage(default_destination, detected=old, due=old + hours(24), status="delivered", delivered=old + hours(30))
    row = figures("authority-a")
    assert row.delivered_in_period == 4
    assert row.median_seconds == pytest.approx(2.5 * 3600)
    assert row.worst_seconds == pytest.approx(10 * 3600)
    assert row.on_time == 4 and row.due_in_period == 4


def test_the_period_bounds_what_counts(default_destination):
    stage(default_destination, detected=NOW - timedelta(days=20), due=NOW - timedelta(days=19), status="delivered",
          delivered=NOW - timedelta(days=18))
    assert figures("authority-a", days=7).due_in_period == 0
    assert figures("authority-a", days=7).delivered_in_period == 0
    assert figures("authority-a", days=30).due_in_period == 1
    assert figures("authority-a", days=30).on_time_rate == 0


def test_breakdowns_per_rule_and_per_destination(default_destination):
    other = make_destination("authority-b")
    detected = NOW - timedelta(days=3)
    stage(default_destination, severity="SEV-1", detected=detected, due=detected + hours(24), status="delivered",
          delivered=detected + hours(2))
    stage(default_destination, severity="SEV-0", detected=detected, due=detected + hours(24), status="delivered",
          delivered=detected + hours(30))
    stage(other, severity="SEV-1", detected=detected, due=NOW - hours(1))
    a_total, a_sev1, a_sev0 = figures("authority-a"), figures("authority-a", "sev1-critical"), \
        figures("authority-a", "sev0-catastrophic")
    assert (a_sev1.on_time, a_sev1.due_in_period) == (1, 1)
    assert (a_sev0.on_time, a_sev0.due_in_period) == (0, 1)
    assert figures("authority-a", "sev2-high").due_in_period == 0
    assert (a_total.on_time, a_total.due_in_period) == (1, 2)
    # The destination's median is over its own deliveries (2 h and 30 h), not a median of medians.
    assert a_total.median_seconds == pytest.approx(16 * 3600) and a_total.worst_seconds == pytest.approx(30 * 3600)
    b_total, b_sev1 = figures("authority-b"), figures("authority-b", "sev1-critical")
    assert b_total.overdue == b_sev1.overdue == 1 and a_total.overdue == 0
    assert figures("authority-b", "sev0-catastrophic").due_in_period == 0 and b_total.due_in_period == 1


def test_the_median_used_on_sqlite_interpolates_like_percentile_cont():
    assert median_and_worst([3.0, 1.0, 2.0]) == (2.0, 3.0)
    assert median_and_worst([1.0, 2.0, 3.0, 10.0]) == (2.5, 10.0)


def test_an_empty_period_is_refused(default_destination):
    with pytest.raises(ValueError, match="end after it starts"):
        compliance_by_destination(start=NOW, end=NOW, now=NOW)


def test_query_count_does_not_grow_with_reports(default_destination):
    def count_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            compliance_by_destination(start=NOW - timedelta(days=30), end=NOW, now=NOW)
        return len(captured.captured_queries)

    stage(default_destination, detected=NOW - timedelta(days=2), due=NOW - timedelta(days=1), status="delivered",
          delivered=NOW - timedelta(days=1, hours=2))
    few = count_queries()
    make_destination("authority-b")
    for index in range(12):
        stage(default_destination, severity=("SEV-1", "SEV-0")[index % 2], detected=NOW - timedelta(days=2),
              due=NOW - hours(index), status="delivered", delivered=NOW - hours(index + 1))
    from django.db import connection

    # PostgreSQL: rules, per rule, per destination. SQLite (`make run`): two more for the medians.
    assert count_queries() == few == (3 if connection.vendor == "postgresql" else 5)


# --- the page -----------------------------------------------------------------------------------
@pytest.fixture
def page_clock(monkeypatch):
    monkeypatch.setattr("reporting.admin.compliance.timezone.now", lambda: NOW)
    return NOW


def test_page_shows_table_and_chart_and_is_linked_from_the_index(staff_client, default_destination, page_clock):
    stage(default_destination, detected=NOW - timedelta(days=2), due=NOW - timedelta(days=1), status="delivered",
          delivered=NOW - timedelta(days=1, hours=20))
    stage(default_destination, detected=NOW - timedelta(days=2), due=NOW - hours(3))
    assert reverse(PAGE) in staff_client.get(reverse("admin:index")).content.decode()
    response = staff_client.get(reverse(PAGE), {"period": "7"})
    page = response.content.decode()
    assert response.status_code == 200
    assert '<svg role="img"' in page and "<script" not in page.split('id="content-main"')[1]  # no JavaScript
    assert "50% on time (1 of 2; 1 late)" in page  # the chart says it in words, not only in colour
    assert 'fill="url(#late-hatch)"' in page
    assert '<table id="compliance-table">' in page and "50% (1 of 2)" in page
    assert "4 h" in page  # detection to delivery: 4 hours
    assert 'class="num overdue overdue-some">1 ⚠' in page


def test_page_defaults_to_30_days_and_shows_no_data(staff_client, default_destination, page_clock):
    page = staff_client.get(reverse(PAGE)).content.decode()
    assert "no stage fell due" in page
    assert (NOW - timedelta(days=30)).strftime("%Y-%m-%d %H:%M") in page


def test_page_without_any_rule_says_so(staff_client, page_clock):
    response = staff_client.get(reverse(PAGE))
    assert response.status_code == 200 and "No reporting rules yet" in response.content.decode()


def test_custom_period_covers_whole_days(staff_client, default_destination, page_clock):
    stage(default_destination, detected=datetime(2026, 3, 30, tzinfo=UTC), due=datetime(2026, 3, 31, 23, 59, tzinfo=UTC),
          status="delivered", delivered=datetime(2026, 3, 31, 1, tzinfo=UTC))
    response = staff_client.get(reverse(PAGE), {"period": "custom", "date_from": "2026-03-01", "date_to": "2026-03-31"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "2026-03-01 00:00" in page and "2026-04-01 00:00" in page and "100% (1 of 1)" in page


@pytest.mark.parametrize("query, message", [
    ({"period": "365"}, "Select a valid choice"),
    ({"period": "custom"}, "needs both a From and a To"),
    ({"period": "custom", "date_from": "2026-03-01"}, "needs both a From and a To"),
    ({"period": "custom", "date_from": "2026-03-31", "date_to": "2026-03-01"}, "From must be on or before To"),
    ({"period": "custom", "date_from": "31/03/2026", "date_to": "2026-04-01"}, "Enter a valid date"),
    ({"period": "custom", "date_from": "2026-02-30", "date_to": "2026-03-01"}, "Enter a valid date"),
    ({"period": "custom", "date_from": "1999-12-31", "date_to": "2000-01-02"}, "on or after 2000-01-01"),
    ({"period": "custom", "date_from": "2026-07-01", "date_to": "2026-07-02"}, "cannot be in the future"),
    ({"period": "custom", "date_from": "2020-01-01", "date_to": "2026-01-01"}, "at most 731 days"),
    ({"period": "custom", "date_from": "99999-01-01", "date_to": "2026-01-01"}, "Enter a valid date"),
    ({"period": "7", "date_from": "2026-03-01"}, "Choose “From … to …”"),
    ({"period": "custom", "date_from": "2026-03-01\x00", "date_to": "2026-03-02"}, "Enter a valid date"),
])
def test_bad_period_is_a_clear_400_and_writes_nothing(staff_client, default_destination, page_clock, query, message):
    events = AuditEvent.objects.count()
    response = staff_client.get(reverse(PAGE), query)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert AuditEvent.objects.count() == events


def test_page_needs_a_verified_staff_login(client, staff_user, default_destination):
    assert client.get(reverse(PAGE))["Location"].startswith("/admin/login/")
    client.force_login(staff_user)  # password only, no second factor
    assert client.get(reverse(PAGE)).status_code == 302


def test_page_query_count_does_not_grow_with_reports(staff_client, default_destination, page_clock):
    def page_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(reverse(PAGE)).status_code == 200
        return len(captured.captured_queries)

    stage(default_destination, detected=NOW - timedelta(days=2), due=NOW - hours(5))
    few = page_queries()
    for index in range(10):
        stage(default_destination, detected=NOW - timedelta(days=2), due=NOW - hours(index), status="delivered",
              delivered=NOW - hours(index + 1))
    assert page_queries() == few


def test_staff_without_the_report_permission_are_refused(client, default_destination):
    from tests.conftest import login_verified

    clerk = get_user_model().objects.create_user("clerk", password="x" * 20, is_staff=True)
    login_verified(client, clerk)
    assert client.get(reverse(PAGE)).status_code == 403
