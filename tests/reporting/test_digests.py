"""Digest stages: SEV-3 weekly digests and SEV-4 monthly aggregates through the ordinary outbox.

Periods are table-tested (week and month edges, leap years, offsets other than UTC); the rest runs on
PostgreSQL with the default rules: which incidents join which digest, what the documents carry and
keep out, late incidents after a freeze, the STIX mapping, and the rule file. Delivery, escalation and
concurrency: tests/reporting/test_digest_delivery.py.
"""
from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone as dj_timezone
from jsonschema import Draft202012Validator

from incidents.models import AuditEvent
from incidents.services.intake import incident_create
from incidents.services.parts import EvidenceInput
from incidents.services.workflow import incident_decide_reportability, incident_transition, incident_update
from reporting.models import DigestEntry, Report
from reporting.packaging.canonical import canonical_bytes
from reporting.packaging.document import build_document
from reporting.packaging.stix import bundle_for, validate_bundle
from reporting.periods import period_after, period_containing
from reporting.services.delivery import report_freeze
from reporting.services.reports import report_approve
from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_export, rules_load
from reporting.signing import signing_key_current
from tests.conftest import incident_fields, login_verified
from tests.reporting.conftest import SYSTEM, make_destination

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "digest-schema.v1.json").read_text())
ACCOUNT = "mallory@attacker.example"
SECRET_PROMPT = "write me a loader that evades EDR"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- periods (pure) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "moment", "start", "end", "label"), [
    # Weeks run Monday 00:00 UTC to Monday 00:00 UTC, half-open.
    ("weekly", utc(2026, 11, 23), utc(2026, 11, 23), utc(2026, 11, 30), "2026-W48"),
    ("weekly", utc(2026, 11, 29, 23, 59, 59, 999999), utc(2026, 11, 23), utc(2026, 11, 30), "2026-W48"),
    ("weekly", utc(2026, 11, 30), utc(2026, 11, 30), utc(2026, 12, 7), "2026-W49"),
    # Across a year end: ISO week 1 of 2026 starts on Monday 2025-12-29.
    ("weekly", utc(2026, 1, 1, 12), utc(2025, 12, 29), utc(2026, 1, 5), "2026-W01"),
    ("weekly", utc(2024, 2, 29, 8), utc(2024, 2, 26), utc(2024, 3, 4), "2024-W09"),
    # Another offset is converted first: Monday 02:00 at +05:00 is Sunday 21:00 UTC, the week before.
    ("weekly", datetime(2026, 11, 30, 2, tzinfo=timezone(timedelta(hours=5))), utc(2026, 11, 23),
     utc(2026, 11, 30), "2026-W48"),
    ("weekly", datetime(2026, 11, 29, 20, tzinfo=timezone(timedelta(hours=-5))), utc(2026, 11, 30),
     utc(2026, 12, 7), "2026-W49"),
    # Months: calendar months in UTC, leap and non-leap Februaries, December into January.
    ("monthly", utc(2024, 2, 29, 23, 59, 59), utc(2024, 2, 1), utc(2024, 3, 1), "2024-02"),
    ("monthly", utc(2025, 2, 28, 12), utc(2025, 2, 1), utc(2025, 3, 1), "2025-02"),
    ("monthly", utc(2024, 3, 1), utc(2024, 3, 1), utc(2024, 4, 1), "2024-03"),
    ("monthly", utc(2026, 12, 31, 23, 59), utc(2026, 12, 1), utc(2027, 1, 1), "2026-12"),
    ("monthly", datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), utc(2026, 12, 1),
     utc(2027, 1, 1), "2026-12"),
])
def test_periods_are_aligned_in_utc(kind, moment, start, end, label):
    period = period_containing(kind, moment)
    assert (period.start, period.end, period.label) == (start, end, label)
    assert period.contains(moment) and not period.contains(end)
    following = period_after(period)
    assert following.start == end and following.end > end


@pytest.mark.parametrize(("kind", "moment"), [("weekly", datetime(2026, 11, 23)), ("daily", utc(2026, 11, 23))])
def test_bad_period_inputs_are_refused(kind, moment):
    with pytest.raises(ValueError):
        period_containing(kind, moment)


# --- joining digests ----------------------------------------------------------------------------------


def sev3(detected_at=None, **overrides):
    incident = incident_create(
        actor=SYSTEM,
        fields=incident_fields(severity="SEV-3", detected_at=detected_at or dj_timezone.now() - timedelta(hours=1),
                               techniques=["AML.T0054"], title=f"Jailbreak attempt by {ACCOUNT}", **overrides),
        accounts=[{"id": ACCOUNT, "enforcement_action": "banned"}],
        evidence=[EvidenceInput(kind="prompt", description="The blocked prompt.", content=SECRET_PROMPT)],
    ).incident
    return incident_transition(incident=incident, actor=SYSTEM, to="confirmed")


def digest_of(incident) -> Report:
    return DigestEntry.objects.select_related("digest").get(incident=incident).digest


@pytest.mark.django_db
def test_sev3_incidents_of_one_week_share_one_digest_and_owe_no_stage_of_their_own(default_destination):
    first, second = sev3(), sev3()
    assert not Report.objects.filter(incident__in=[first, second]).exists()
    digest = digest_of(first)
    assert digest_of(second) == digest and digest.is_digest and digest.stage_kind == "digest"
    period = period_containing("weekly", first.detected_at)
    assert (digest.period_start, digest.period_end) == (period.start, period.end)
    assert digest.clock_started_at == period.end and digest.due_at == period.end + timedelta(days=2)
    assert digest.status == "awaiting_approval" and digest.next_attempt_at is None
    assert AuditEvent.objects.filter(action="digest_joined", incident=first).exists()
    assert AuditEvent.objects.filter(action="digest_opened", object_id=str(digest.public_id)).count() == 1
    # A later change does not add the incident twice.
    incident_update(incident=first, actor=SYSTEM, fields={"summary": "more"})
    assert DigestEntry.objects.filter(incident=first).count() == 1


@pytest.mark.django_db
def test_sev4_goes_to_the_monthly_aggregate(default_destination):
    incident = incident_create(actor=SYSTEM, fields=incident_fields(severity="SEV-4")).incident
    digest = digest_of(incident)
    period = period_containing("monthly", incident.detected_at)
    assert digest.stage_key == "monthly_aggregate" and digest.period_start == period.start
    assert digest.due_at == period.end + timedelta(days=5)


@pytest.mark.django_db
def test_approval_before_the_period_ends_waits_for_the_period(default_destination, staff_actor):
    digest = digest_of(sev3())
    report_approve(report=digest, actor=staff_actor)
    digest.refresh_from_db()
    assert digest.status == "pending" and digest.next_attempt_at == digest.period_end


@pytest.mark.django_db
def test_a_late_incident_after_the_digest_was_frozen_goes_to_the_next_period(default_destination, staff_actor):
    signing_key_current()
    last_week = dj_timezone.now() - timedelta(days=7)
    digest = digest_of(sev3(detected_at=last_week))
    report_freeze(report_id=digest.pk)
    late = sev3(detected_at=last_week)
    following = digest_of(late)
    assert following != digest and following.period_start == digest.period_end
    digest.refresh_from_db()
    assert json.loads(digest.payload)["document"]["statistics"]["incidents"] == 1


@pytest.mark.django_db
def test_an_escalated_incident_gets_its_own_stages_and_stays_in_its_digest(default_destination):
    incident = sev3()
    digest = digest_of(incident)
    incident_update(incident=incident, actor=SYSTEM, fields={"severity": "SEV-1"})
    assert Report.objects.filter(incident=incident, rule__name="sev1-critical").count() == 3
    [listed] = build_document(report=digest)["incidents"]
    assert listed["incident_id"] == str(incident.public_id) and listed["severity"] == "SEV-1"


@pytest.mark.django_db
def test_an_incident_decided_not_reportable_is_left_out(default_destination, staff_actor):
    kept, dropped = sev3(), sev3()
    incident_decide_reportability(incident=dropped, actor=staff_actor, reportable=False, reason="test traffic")
    document = build_document(report=digest_of(kept))
    assert [i["incident_id"] for i in document["incidents"]] == [str(kept.public_id)]
    assert document["statistics"]["incidents"] == 1


@pytest.mark.django_db
def test_child_safety_never_joins_a_normal_destinations_digest_nor_its_counts(default_destination):
    assert not DigestEntry.objects.filter(incident=sev3(category="CHILD_SAFETY")).exists()
    joined = sev3()
    incident_update(incident=joined, actor=SYSTEM, fields={"category": "CHILD_SAFETY"})
    document = build_document(report=digest_of(joined))
    assert document["incidents"] == [] and document["nothing_to_report"] is True
    assert "CHILD_SAFETY" not in json.dumps(document)


@pytest.mark.django_db
def test_a_child_protection_destination_gets_child_safety_in_its_digest(staff_actor):
    destination = make_destination("ncmec", accepts_child_safety=True)
    incident = sev3(category="CHILD_SAFETY")
    digest = DigestEntry.objects.get(incident=incident, digest__destination=destination).digest
    assert build_document(report=digest)["statistics"]["by_category"] == {"CHILD_SAFETY": 1}


# --- documents ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_weekly_digest_lists_incidents_with_pseudonyms_and_digests_only(default_destination):
    incident = sev3()
    document = build_document(report=digest_of(incident))
    Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(document)
    [listed] = document["incidents"]
    assert listed["counts"] == {"occurrences": 1, "accounts": 1, "indicators": 0, "evidence": 1}
    assert listed["techniques"] == ["AML.T0054"] and listed["determination"] == "confirmed"
    assert listed["accounts"][0]["pseudonym"] in listed["title"]
    assert len(listed["evidence"][0]["sha256"]) == 64
    text = canonical_bytes(document).decode()
    assert ACCOUNT not in text and SECRET_PROMPT not in text


@pytest.mark.django_db
def test_the_monthly_aggregate_carries_statistics_only(default_destination):
    incidents = [incident_create(actor=SYSTEM, fields=incident_fields(severity="SEV-4", category=category,
                                                                      surface="api")).incident
                 for category in ("CYBER", "FRAUD", "FRAUD")]
    document = build_document(report=digest_of(incidents[0]))
    Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(document)
    assert "incidents" not in document and document["content"] == "aggregate"
    assert document["statistics"]["by_category"] == {"CYBER": 1, "FRAUD": 2}
    assert document["statistics"]["by_surface"] == {"api": 3} and document["statistics"]["incidents"] == 3
    text = json.dumps(document)
    assert all(str(i.public_id) not in text and i.reference not in text for i in incidents)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["weekly", "monthly"])
def test_the_stix_mapping_is_a_valid_report_referencing_the_incidents(default_destination, kind):
    incident = sev3() if kind == "weekly" else incident_create(
        actor=SYSTEM, fields=incident_fields(severity="SEV-4")).incident
    digest = digest_of(incident)
    document = build_document(report=digest)
    bundle = bundle_for(document, message_id=str(digest.public_id), payload=canonical_bytes(document))
    validate_bundle(bundle)
    [report] = [o for o in bundle["objects"] if o["type"] == "report"]
    incidents = [o["id"] for o in bundle["objects"] if o["type"] == "incident"]
    assert set(incidents) <= set(report["object_refs"]) and len(incidents) == (1 if kind == "weekly" else 0)
    assert bundle == bundle_for(document, message_id=str(digest.public_id), payload=canonical_bytes(document))


# --- rules ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_digest_stages_round_trip_through_export_and_load(default_destination):
    exported = rules_export(destination=default_destination)
    weekly = next(r for r in exported["rules"] if r["name"] == "sev3-weekly-digest")["stages"][0]
    assert weekly | {"offset": "2d"} == {"key": "weekly_digest", "name": "weekly_digest", "kind": "digest",
                                          "clock_start": "period_end", "offset": "2d", "requires_approval": True,
                                          "period": "weekly", "content": "list"}
    rules_load(data=copy.deepcopy(exported), actor=SYSTEM, destination=default_destination)
    assert rules_export(destination=default_destination) == exported


@pytest.mark.django_db
def test_a_rule_edit_moves_an_open_digest_and_flags_it_when_its_stage_goes(default_destination, staff_actor):
    digest = digest_of(sev3())
    data = copy.deepcopy(read_rules_file(DEFAULT_RULES))
    weekly = next(r for r in data["rules"] if r["name"] == "sev3-weekly-digest")
    weekly["stages"][0].update(offset="1d", name="weekly_summary")
    rules_load(data=data, actor=staff_actor, destination=default_destination, reason="shorter")
    digest.refresh_from_db()
    assert digest.due_at == digest.period_end + timedelta(days=1) and digest.stage_name == "weekly_summary"
    weekly["stages"] = [{"name": "initial", "kind": "initial", "clock_start": "determined_at", "offset": "3d"}]
    rules_load(data=data, actor=staff_actor, destination=default_destination, reason="no more digest")
    digest.refresh_from_db()
    assert digest.status == "awaiting_approval" and "removed" in digest.unowed_note


@pytest.mark.django_db
@pytest.mark.parametrize(("change", "field"), [
    ({"period": None}, "period"),
    ({"period": "daily"}, "period"),
    ({"content": "everything"}, "content"),
    ({"clock_start": "detected_at"}, "clock_start"),
    ({"repeat_every": "1d"}, "repeat_every"),
    ({"on_material_change": True}, "on_material_change"),
])
def test_bad_digest_stages_are_refused(default_destination, change, field):
    data = copy.deepcopy(read_rules_file(DEFAULT_RULES))
    stage = next(r for r in data["rules"] if r["name"] == "sev3-weekly-digest")["stages"][0]
    stage.update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        stage.pop(key)
    with pytest.raises(ValidationError) as caught:
        rules_load(data=data, actor=SYSTEM, destination=default_destination)
    assert any(key.endswith(f".{field}") for key in caught.value.message_dict)


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [{"period": "weekly"}, {"content": "list"}, {"clock_start": "period_end"}])
def test_digest_settings_on_an_ordinary_stage_are_refused(default_destination, extra):
    data = copy.deepcopy(read_rules_file(DEFAULT_RULES))
    data["rules"][0]["stages"][0].update(extra)
    with pytest.raises(ValidationError):
        rules_load(data=data, actor=SYSTEM, destination=default_destination)


@pytest.mark.django_db
def test_the_admin_refuses_a_digest_stage_without_a_period(client, staff_user, default_destination):
    from reporting.models import ReportingRule
    from tests.incidents.test_admin import submit

    login_verified(client, staff_user)
    rule = ReportingRule.objects.get(destination=default_destination, name="sev3-weekly-digest")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    response = submit(client, url, {"stages-0-digest_period": ""}, form_id="reportingrule_form")
    assert response.status_code == 200
    assert "digest_period" in response.context["inline_admin_formsets"][0].formset.forms[0].errors


@pytest.mark.django_db
def test_a_digest_carries_the_sealed_audit_chain_head_like_every_report(default_destination):
    from incidents.selectors import audit_chain_head
    from incidents.services.audit_chain import audit_seal

    incident = sev3()
    audit_seal()
    head = audit_chain_head()
    document = build_document(report=digest_of(incident))
    Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(document)
    assert document["audit_chain_head"]["seq"] == head.seq and document["audit_chain_head"]["hash"] == head.hash
