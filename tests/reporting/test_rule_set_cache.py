"""The per-process rule set (reporting.rule_set_cache): reused while nothing changed, reloaded after
any committed change from any connection, never poisoned by a rolled-back or concurrent change."""
from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction

from reporting.models import ReportingRule, RuleStage
from reporting.rule_set_cache import rule_set_cache_clear, rule_set_cached, rule_set_version
from reporting.services.admin_changes import destination_update
from reporting.services.obligations import active_rules
from tests.conftest import make_incident
from tests.reporting.conftest import SYSTEM, make_destination

pytestmark = pytest.mark.django_db


def rule_names() -> set[str]:
    return {rule.name for rule, _spec in active_rules()}


def other_connection() -> psycopg.Connection:
    """A second session, as another process would have: its commits are all the cache can see."""
    settings = connection.settings_dict
    return psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                           port=settings["PORT"] or 5432, password=settings["PASSWORD"] or None, autocommit=True)


def test_an_unchanged_rule_set_costs_one_query(django_assert_num_queries):
    make_destination()
    rule_set_cache_clear()
    first = active_rules()
    assert first
    with django_assert_num_queries(1):  # the version only
        assert active_rules() is first


def test_every_kind_of_change_is_seen_at_once():
    destination = make_destination()
    before = rule_names()
    rule = ReportingRule.objects.filter(destination=destination).first()

    ReportingRule.objects.filter(pk=rule.pk).update(is_active=False)
    assert rule_names() == before - {rule.name}
    ReportingRule.objects.filter(pk=rule.pk).update(is_active=True)
    assert rule_names() == before

    RuleStage.objects.create(rule=rule, name="extra", kind="update", position=99, clock_start="detected_at",
                             offset=timedelta(days=9))
    assert "extra" in {s.name for r, spec in active_rules() if r.pk == rule.pk for s in spec.stages}

    destination_update(destination=destination, actor=SYSTEM, fields={"is_active": False}, reason="test")
    assert rule_names() == set()


def test_the_obligations_hook_opens_reports_for_a_rule_added_after_the_cache_was_filled():
    make_incident()  # fills the cache with an empty rule set
    make_destination()
    incident = make_incident(severity="SEV-0")
    assert incident.reports.exists()


def test_a_rolled_back_change_leaves_no_trace_in_the_cache():
    make_destination(rules=None)
    assert rule_names() == set()
    with pytest.raises(RuntimeError), transaction.atomic():
        make_destination("authority-b")
        assert rule_names()  # this transaction sees, and caches, its own uncommitted rules
        raise RuntimeError("roll back")
    assert rule_names() == set()


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_by_another_process_is_seen():
    make_destination()
    rule = ReportingRule.objects.first()
    assert rule.name in rule_names()
    with other_connection() as other:
        other.execute("UPDATE reporting_reportingrule SET is_active = false WHERE id = %s", [rule.pk])
    assert rule.name not in rule_names()


@pytest.mark.django_db(transaction=True)
def test_a_rule_set_that_changed_while_loading_is_not_kept():
    make_destination()
    rule = ReportingRule.objects.first()
    loads = []

    def load_then_another_process_commits() -> list[str]:
        loads.append(1)
        names = sorted(r.name for r in ReportingRule.objects.filter(is_active=True))
        if len(loads) == 1:
            with other_connection() as other:
                other.execute("UPDATE reporting_reportingrule SET description = 'edited' WHERE id = %s", [rule.pk])
        return names

    rule_set_cache_clear()
    rule_set_cached(load_then_another_process_commits)
    rule_set_cached(load_then_another_process_commits)
    assert len(loads) == 2  # the first result was tagged with a version that had already moved
    rule_set_cached(load_then_another_process_commits)
    assert len(loads) == 2


def test_versions_never_repeat_after_a_rollback():
    start = rule_set_version()
    with pytest.raises(RuntimeError), transaction.atomic():
        make_destination(rules=None)
        inside = rule_set_version()
        raise RuntimeError("roll back")
    assert rule_set_version() == start
    make_destination("authority-c", rules=None)
    assert rule_set_version() not in {start, inside}

