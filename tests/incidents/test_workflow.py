"""Status changes, re-triage and reportability: one table, one function each, always audited."""
from __future__ import annotations

import itertools

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from incidents.actors import Actor
from incidents.choices import ActorKind, Determination, Reportability, Status
from incidents.hooks import register_incident_hook, unregister_incident_hook
from incidents.models import AuditEvent, Incident
from incidents.models.audit import AppendOnlyError
from incidents.services.workflow import incident_decide_reportability, incident_transition, incident_update
from incidents.transitions import ALLOWED_TRANSITIONS, TransitionError
from tests.conftest import make_incident

pytestmark = pytest.mark.django_db

# How to reach each status from NEW through allowed moves (with the reason a dismissal needs).
PATHS = {
    Status.NEW: [],
    Status.TRIAGED: [Status.TRIAGED],
    Status.CONFIRMED: [Status.CONFIRMED],
    Status.DISMISSED: [Status.DISMISSED],
    Status.RESOLVED: [Status.CONFIRMED, Status.RESOLVED],
    Status.CLOSED: [Status.CONFIRMED, Status.RESOLVED, Status.CLOSED],
}


def reach(status, actor):
    incident = make_incident()
    for step in PATHS[status]:
        incident = incident_transition(incident=incident, actor=actor, to=step, reason="because")
    return incident


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Status.values, Status.values)))
def test_every_pair_of_statuses_follows_the_table(staff_actor, current, target):
    incident = reach(current, staff_actor)
    events_before = AuditEvent.objects.count()
    if target in ALLOWED_TRANSITIONS[current]:
        moved = incident_transition(incident=incident, actor=staff_actor, to=target, reason="because")
        assert moved.status == target
        assert Incident.objects.get(pk=incident.pk).status == target
        event = AuditEvent.objects.latest("id")
        assert event.action == f"status_{target}" and event.changes["status"] == [current, target]
        assert event.actor_kind == ActorKind.USER and event.actor_user == staff_actor.user
    else:
        with pytest.raises(TransitionError):
            incident_transition(incident=incident, actor=staff_actor, to=target, reason="because")
        assert Incident.objects.get(pk=incident.pk).status == current
        assert AuditEvent.objects.count() == events_before


def test_confirm_sets_determination_and_determined_at_once(staff_actor):
    incident = incident_transition(incident=make_incident(), actor=staff_actor, to=Status.CONFIRMED)
    assert incident.determination == Determination.CONFIRMED and incident.determined_at is not None
    first = incident.determined_at
    incident = incident_transition(incident=incident, actor=staff_actor, to=Status.RESOLVED)
    incident = incident_transition(incident=incident, actor=staff_actor, to=Status.CONFIRMED)
    assert incident.determined_at == first and incident.resolved_at is not None


def test_dismiss_needs_a_reason_and_records_it(staff_actor):
    incident = make_incident()
    with pytest.raises(ValidationError):
        incident_transition(incident=incident, actor=staff_actor, to=Status.DISMISSED, reason="  ")
    assert Incident.objects.get(pk=incident.pk).status == Status.NEW
    incident = incident_transition(incident=incident, actor=staff_actor, to=Status.DISMISSED, reason="test traffic")
    assert incident.determination == Determination.FALSE_POSITIVE and incident.dismissal_reason == "test traffic"
    assert AuditEvent.objects.latest("id").reason == "test traffic"
    reopened = incident_transition(incident=incident, actor=staff_actor, to=Status.TRIAGED, reason="new evidence")
    assert reopened.determination == Determination.SUSPECTED and reopened.dismissal_reason == ""


def test_update_records_each_changed_field(staff_actor):
    incident = make_incident(severity="SEV-2")
    updated = incident_update(
        incident=incident, actor=staff_actor, fields={"severity": "SEV-1", "countries": ["us"], "title": incident.title},
        reason="new intel",
    )
    assert updated.severity == "SEV-1" and updated.countries == ["US"]
    event = AuditEvent.objects.latest("id")
    assert event.action == "updated" and event.reason == "new intel"
    assert event.changes == {"severity": ["SEV-2", "SEV-1"], "countries": [[], ["US"]]}


def test_update_with_no_change_writes_nothing(staff_actor):
    incident = make_incident()
    before = AuditEvent.objects.count()
    incident_update(incident=incident, actor=staff_actor, fields={"title": incident.title})
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("field", ["status", "detected_at", "score", "reportability", "occurrence_count", "detector"])
def test_update_refuses_service_owned_fields(staff_actor, field):
    incident = make_incident()
    with pytest.raises(ValidationError):
        incident_update(incident=incident, actor=staff_actor, fields={field: None})


def test_update_rejects_invalid_values_and_keeps_the_row(staff_actor):
    incident = make_incident()
    with pytest.raises(ValidationError):
        incident_update(incident=incident, actor=staff_actor, fields={"severity": "SEV-9"})
    with pytest.raises(ValidationError):
        incident_update(incident=incident, actor=staff_actor, fields={"techniques": ["bogus"]})
    assert Incident.objects.get(pk=incident.pk).severity == "SEV-1"


def test_reportability_decision_records_who_when_why(staff_actor):
    incident = incident_decide_reportability(
        incident=make_incident(), actor=staff_actor, reportable=False, reason="blocked before any harm"
    )
    assert incident.reportability == Reportability.NOT_REPORTABLE
    assert incident.reportability_decided_by == staff_actor.user and incident.reportability_decided_at
    assert incident.reportability_reason == "blocked before any harm"
    assert AuditEvent.objects.latest("id").action == "reportability_decided"


def test_reportability_needs_a_person_and_a_reason(staff_actor):
    incident = make_incident()
    with pytest.raises(ValidationError):
        incident_decide_reportability(incident=incident, actor=staff_actor, reportable=True, reason="")
    with pytest.raises(ValidationError):
        incident_decide_reportability(incident=incident, actor=Actor.system(), reportable=True, reason="auto")


def test_hooks_run_in_the_same_transaction_and_a_failing_hook_rolls_everything_back(staff_actor):
    seen = []

    def recorder(change):
        seen.append((change.kind, transaction.get_connection().in_atomic_block))

    def failing(change):
        raise RuntimeError("obligation bookkeeping failed")

    register_incident_hook(recorder)
    try:
        incident = make_incident()
        incident_transition(incident=incident, actor=staff_actor, to=Status.TRIAGED)
        assert seen == [("created", True), ("transitioned", True)]
        register_incident_hook(failing)
        with pytest.raises(RuntimeError):
            make_incident(title="never stored")
        with pytest.raises(RuntimeError):
            incident_transition(incident=incident, actor=staff_actor, to=Status.CONFIRMED)
    finally:
        unregister_incident_hook(recorder)
        unregister_incident_hook(failing)
    assert not Incident.objects.filter(title="never stored").exists()
    assert Incident.objects.get(pk=incident.pk).status == Status.TRIAGED
    assert not AuditEvent.objects.filter(action="status_confirmed").exists()


def test_audit_events_are_append_only(staff_actor):
    make_incident()
    event = AuditEvent.objects.get()
    event.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update(reason="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction(staff_actor):
    from incidents.services.audit import audit_record

    incident = make_incident()
    with pytest.raises(RuntimeError):
        audit_record(actor=staff_actor, action="x", obj=incident)


def test_staff_filed_incident_records_the_person(staff_actor):
    incident = make_incident(actor=staff_actor)
    assert incident.filed_by == staff_actor.user and incident.detection_source == "staff"
    tip = make_incident(actor=staff_actor, external_source="CERT-EU phone call")
    assert tip.detection_source == "external_tip"


def test_part_changes_reach_the_hooks(staff_actor):
    from incidents.services.parts import incident_parts_add, indicator_remove

    seen = []
    register_incident_hook(seen.append)
    try:
        incident = make_incident()
        incident_parts_add(incident=incident, actor=staff_actor, indicators=[{"type": "ip", "value": "192.0.2.7"}])
        indicator_remove(indicator=incident.indicators.get(), actor=staff_actor, reason="typo")
    finally:
        unregister_incident_hook(seen.append)
    assert [change.kind for change in seen] == ["created", "parts", "parts"]
    assert "parts_added" in seen[1].changes and "indicator_removed" in seen[2].changes
