"""What an incident owes, when: the pure rules (table-tested) and the Report rows they open."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incidents.choices import Reportability, Status
from reporting.obligations import (
    DeliveredStages,
    IncidentFacts,
    RuleSpec,
    StageSpec,
    delivery_starts_clocks,
    escalation_due,
    is_material,
    owed_stages,
    rule_applies,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def facts(**overrides) -> IncidentFacts:
    base = dict(category="CYBER", severity="SEV-1", determination="suspected", reportability="pending",
                imminent_risk_to_life=False, detected_at=T0)
    base.update(overrides)
    return IncidentFacts(**base)


def stage(name="initial", kind="initial", position=1, clock_start="detected_at", offset=24 * H, **kw) -> StageSpec:
    return StageSpec(name=name, kind=kind, position=position, clock_start=clock_start, offset=offset, **kw)


def rule(stages=None, **kw) -> RuleSpec:
    stages = stages if stages is not None else (stage(),)
    return RuleSpec(rule_id=1, destination_accepts_child_safety=kw.pop("cs", False), stages=tuple(stages), **kw)


APPLIES = [
    ({}, {}, True),
    ({"severity": "SEV-3"}, {"min_severity": "SEV-2"}, False),
    ({"severity": "SEV-2"}, {"min_severity": "SEV-2"}, True),
    ({"severity": "SEV-0"}, {"min_severity": "SEV-2", "max_severity": "SEV-1"}, False),
    ({"category": "FRAUD"}, {"categories": ("CYBER",)}, False),
    ({"category": "CYBER"}, {"categories": ("CYBER", "FRAUD")}, True),
    ({"determination": "suspected"}, {"determinations": ("confirmed",)}, False),
    ({"determination": "confirmed"}, {"determinations": ("confirmed",)}, True),
    ({}, {"requires_imminent_risk": True}, False),
    ({"imminent_risk_to_life": True}, {"requires_imminent_risk": True}, True),
    ({}, {"requires_reportable_decision": True}, False),
    ({"reportability": Reportability.REPORTABLE}, {"requires_reportable_decision": True}, True),
    ({"reportability": Reportability.NOT_REPORTABLE}, {}, False),
    ({"category": "CHILD_SAFETY"}, {}, False),
    ({"category": "CHILD_SAFETY"}, {"categories": ("CHILD_SAFETY",)}, False),
    ({"category": "CHILD_SAFETY"}, {"cs": True}, True),
    ({"category": "CYBER"}, {"cs": True, "categories": ("CHILD_SAFETY",)}, False),
]


@pytest.mark.parametrize(("incident", "rule_kw", "expected"), APPLIES)
def test_rule_applies(incident, rule_kw, expected):
    assert rule_applies(facts(**incident), rule(**rule_kw)) is expected


def test_clock_starts_at_the_named_trigger_time():
    spec = rule([stage(clock_start="determined_at", offset=72 * H)])
    [owed] = owed_stages(facts(), spec, DeliveredStages())
    assert owed.clock_started_at is None and owed.due_at is None  # not confirmed yet: clock not running
    [owed] = owed_stages(facts(determined_at=T0 + 5 * H), spec, DeliveredStages())
    assert owed.clock_started_at == T0 + 5 * H and owed.due_at == T0 + 77 * H


def test_previous_delivered_starts_the_next_stage_clock():
    spec = rule([stage(), stage("full", "update", 2, "previous_delivered", 48 * H)])
    first, second = owed_stages(facts(), spec, DeliveredStages())
    assert first.due_at == T0 + 24 * H and second.due_at is None
    delivered = DeliveredStages(at={("initial", 1): T0 + 2 * H})
    _, second = owed_stages(facts(), spec, delivered)
    assert second.clock_started_at == T0 + 2 * H and second.due_at == T0 + 50 * H


def test_periodic_update_rounds_follow_deliveries_until_resolved():
    spec = rule([stage(), stage("update", "update", 2, "previous_delivered", 24 * H, repeat_every=24 * H)])
    delivered = DeliveredStages(at={("initial", 1): T0 + H})
    owed = owed_stages(facts(), spec, delivered)
    assert [(o.stage.name, o.sequence, o.due_at) for o in owed] == [("initial", 1, T0 + 24 * H),
                                                                     ("update", 1, T0 + 25 * H)]
    assert owed[1].not_before == T0 + 24 * H  # sent near its due time, not right after the initial
    delivered.at[("update", 1)] = T0 + 24 * H
    delivered.at[("update", 2)] = T0 + 48 * H
    owed = owed_stages(facts(), spec, delivered)
    assert (owed[-1].sequence, owed[-1].due_at) == (3, T0 + 72 * H)
    assert owed_stages(facts(resolved_at=T0 + 50 * H), spec, delivered)[-1].sequence == 1


def test_material_change_stages_have_no_clock_of_their_own():
    spec = rule([stage(), stage("supplemental", "update", 2, "detected_at", 72 * H, on_material_change=True)])
    assert [o.stage.name for o in owed_stages(facts(), spec, DeliveredStages())] == ["initial"]


@pytest.mark.parametrize(
    ("changes", "kind", "expected"),
    [({"severity": 1}, "updated", True), ({"title": 1}, "updated", False), ({}, "parts", True),
     ({}, "occurrence", True), ({"status": 1}, "transitioned", True), ({"summary": 1}, "updated", False)],
)
def test_material_changes(changes, kind, expected):
    assert is_material(changes, kind) is expected


@pytest.mark.parametrize(
    ("elapsed_hours", "expected"),
    [(0, []), (11, []), (12, [0.5]), (18, [0.5, 0.75]), (21.6, [0.5, 0.75, 0.9]), (24, [0.5, 0.75, 0.9, 1.0]),
     (100, [0.5, 0.75, 0.9, 1.0])],
)
def test_escalation_points(elapsed_hours, expected):
    now = T0 + timedelta(hours=elapsed_hours)
    assert escalation_due(clock_started_at=T0, due_at=T0 + 24 * H, now=now, points=[0.9, 0.5, 0.75]) == expected


# --- The service: Report rows opened in the incident's transaction --------------------------------------

from incidents.services.workflow import incident_decide_reportability, incident_transition, incident_update  # noqa: E402
from reporting.choices import ReportStatus  # noqa: E402
from reporting.models import Report  # noqa: E402
from tests.conftest import make_incident  # noqa: E402
from tests.reporting.conftest import make_destination  # noqa: E402


@pytest.mark.django_db
def test_sev1_incident_opens_its_stages_with_the_default_rules(default_destination):
    incident = make_incident(severity="SEV-1")
    reports = {r.stage_name: r for r in Report.objects.filter(incident=incident)}
    assert set(reports) == {"early_notice", "full_report", "final"}
    early = reports["early_notice"]
    assert early.status == ReportStatus.PENDING and early.due_at == incident.detected_at + 24 * H
    assert early.next_attempt_at is not None  # sent promptly, without waiting for approval
    assert reports["full_report"].status == ReportStatus.AWAITING_APPROVAL
    assert reports["final"].due_at is None and reports["final"].next_attempt_at is None  # not resolved yet


@pytest.mark.django_db
def test_sev2_waits_for_confirmation_and_approval(default_destination, staff_actor):
    incident = make_incident(severity="SEV-2")
    assert not Report.objects.filter(incident=incident).exists()  # suspected SEV-2 owes nothing yet
    incident = incident_transition(incident=incident, actor=staff_actor, to=Status.CONFIRMED)
    initial = Report.objects.get(incident=incident, stage_name="initial")
    assert initial.status == ReportStatus.AWAITING_APPROVAL and initial.next_attempt_at is None
    assert initial.due_at == incident.determined_at + 72 * H


@pytest.mark.django_db
def test_resolution_starts_the_final_clock(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    incident = incident_transition(incident=incident, actor=staff_actor, to=Status.CONFIRMED)
    incident = incident_transition(incident=incident, actor=staff_actor, to=Status.RESOLVED)
    final = Report.objects.get(incident=incident, stage_name="final")
    assert final.due_at == incident.resolved_at + timedelta(days=30)


@pytest.mark.django_db
def test_raising_severity_opens_the_more_urgent_rule(default_destination, staff_actor):
    incident = make_incident(severity="SEV-3")
    assert not Report.objects.filter(incident=incident).exists()
    incident_update(incident=incident, actor=staff_actor, fields={"severity": "SEV-0"})
    assert Report.objects.filter(incident=incident, rule__name="sev0-catastrophic", stage_name="initial").exists()


@pytest.mark.django_db
def test_not_reportable_decision_withdraws_open_stages_with_its_reason(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    incident_decide_reportability(incident=incident, actor=staff_actor, reportable=False, reason="internal test")
    statuses = set(Report.objects.filter(incident=incident).values_list("status", "withdrawn_reason"))
    assert statuses == {(ReportStatus.WITHDRAWN, "decided not reportable: internal test")}


@pytest.mark.django_db
def test_child_safety_never_reaches_a_normal_destination(default_destination):
    cs_destination = make_destination("ncmec", accepts_child_safety=True, rules=None)
    from incidents.actors import Actor
    from reporting.services.rules import rules_load

    rules_load(data={"version": 1, "rules": [{"name": "cs", "categories": ["CHILD_SAFETY"], "stages": [
        {"name": "initial", "kind": "initial", "clock_start": "detected_at", "offset": "24h"}]}]},
        actor=Actor.system("t"), destination=cs_destination)
    incident = make_incident(category="CHILD_SAFETY", severity="SEV-0")
    assert set(Report.objects.filter(incident=incident).values_list("destination__name", flat=True)) == {"ncmec"}


# Rule shapes for delivery_starts_clocks: (stages, the stage delivered, whether that can open or move anything).
_FINAL = stage("final", "final", 9, "resolved_at", 720 * H, requires_approval=True)
_SUPPLEMENTAL = stage("supplemental", "update", 3, "detected_at", 72 * H, on_material_change=True)
STARTS = [
    # The default SEV-1 rule: nothing waits for the early notice.
    ([stage("early_notice"), stage("full_report", "update", 2, "detected_at", 72 * H), _SUPPLEMENTAL, _FINAL],
     "early_notice", False),
    # The default SEV-0 rule: the update's clock starts at the initial's delivery, and then repeats.
    ([stage(), stage("update", "update", 2, "previous_delivered", 24 * H, repeat_every=24 * H), _SUPPLEMENTAL,
      _FINAL], "initial", True),
    ([stage(), stage("update", "update", 2, "previous_delivered", 24 * H, repeat_every=24 * H)], "update", True),
    # previous_delivered names the stage just before, by position, not by listing order.
    ([stage("b", "update", 3, "previous_delivered", H), stage("a", "initial", 1), stage("m", "update", 2)],
     "a", False),
    ([stage("b", "update", 3, "previous_delivered", H), stage("a", "initial", 1), stage("m", "update", 2)],
     "m", True),
    # A renamed stage keeps its key: the key is what deliveries are recorded under.
    ([stage("Initial notice", key="initial"), stage("next", "update", 2, "previous_delivered", H)], "initial", True),
    # A supplemental or an answer stage has no clocked successor; a digest is not owed per incident.
    ([stage(), _SUPPLEMENTAL, stage("next", "update", 4, "previous_delivered", H)], "supplemental", False),
    ([stage(), stage("next", "update", 2, "previous_delivered", H)], "answer", False),
    ([stage("weekly", "digest", 1, "period_end", 48 * H), stage("next", "update", 2, "previous_delivered", H)],
     "weekly", False),
    # A first stage on previous_delivered starts at detection: it waits for nothing.
    ([stage("first", "initial", 1, "previous_delivered", H), stage("second", "update", 2, "detected_at", H)],
     "second", False),
]


@pytest.mark.parametrize(("stages", "delivered_key", "expected"), STARTS)
def test_delivery_starts_clocks_agrees_with_owed_stages(stages, delivered_key, expected):
    """The skip is only taken where owed_stages itself cannot tell the delivery happened."""
    spec = rule(stages)
    assert delivery_starts_clocks(spec, delivered_key) is expected
    before = DeliveredStages()
    after = DeliveredStages(at={(delivered_key, 1): T0 + H})
    changed = owed_stages(facts(), spec, before) != owed_stages(facts(), spec, after)
    assert changed is expected
