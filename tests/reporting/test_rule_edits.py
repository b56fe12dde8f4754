"""A rule edit reaches open stages at once; a stage's key is its identity across renames.

Rules are edited the two ways staff edit them: ``rules_load`` (a file under version control) and the
admin's rule form. What must hold: open, unfrozen stages follow the edit in one go (deadline, label),
frozen and delivered ones keep what was signed, nothing is closed without a person, and the audit
trail says what moved.
"""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from incidents.actors import Actor
from incidents.models import AuditEvent
from incidents.services.workflow import incident_update
from reporting.choices import ReportStatus
from reporting.models import Report, ReportingRule, RuleStage
from reporting.services.delivery import report_freeze
from reporting.services.rule_reschedule import rule_reschedule_open_reports
from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_export, rules_load
from reporting.signing import signing_key_current
from tests.conftest import login_verified, make_incident
from tests.incidents.test_admin import scrape, submit

pytestmark = pytest.mark.django_db
H = timedelta(hours=1)


def default_rules() -> dict:
    return copy.deepcopy(read_rules_file(DEFAULT_RULES))


def sev1(data: dict) -> dict:
    return next(rule for rule in data["rules"] if rule["name"] == "sev1-critical")


def stage_of(data: dict, name: str) -> dict:
    return next(stage for stage in sev1(data)["stages"] if stage["name"] == name)


def load(data: dict, destination, actor: Actor, reason: str = "policy v2") -> None:
    rules_load(data=data, actor=actor, destination=destination, reason=reason)


def report(incident, key: str) -> Report:
    return Report.objects.get(incident=incident, stage_key=key)


# --- (a) deadlines follow the edit at once ----------------------------------------------------------


def test_a_loaded_offset_change_moves_open_deadlines_at_once_and_is_audited(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    before = report(incident, "early_notice")
    assert before.due_at == incident.detected_at + 24 * H
    data = default_rules()
    stage_of(data, "early_notice")["offset"] = "12h"
    load(data, default_destination, staff_actor)
    after = report(incident, "early_notice")
    assert after.due_at == incident.detected_at + 12 * H and after.status == ReportStatus.PENDING
    event = AuditEvent.objects.get(action="rule_reports_rescheduled")
    assert event.reason == "policy v2" and event.actor_user == staff_actor.user
    [moved] = event.changes["rescheduled"]
    assert moved["report"] == str(after.public_id) and moved["incident"] == incident.reference
    assert moved["due_at"] == [before.due_at.isoformat(), after.due_at.isoformat()]
    # Nothing was opened twice by the edit or by the incident's next change.
    incident_update(incident=incident, actor=staff_actor, fields={"summary": "more detail"})
    assert Report.objects.filter(incident=incident, stage_key="early_notice").count() == 1


def test_frozen_and_delivered_stages_keep_what_was_signed(default_destination, staff_actor):
    signing_key_current()
    incident = make_incident(severity="SEV-1")
    frozen = report_freeze(report_id=report(incident, "early_notice").pk)
    data = default_rules()
    stage_of(data, "early_notice").update(offset="6h", name="notice")
    load(data, default_destination, staff_actor)
    frozen.refresh_from_db()
    assert frozen.due_at == incident.detected_at + 24 * H and frozen.stage_name == "early_notice"
    assert not AuditEvent.objects.filter(action="rule_reports_rescheduled").exists()


def test_a_clock_moved_to_an_event_not_yet_happened_stops_the_pending_send(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    assert report(incident, "early_notice").next_attempt_at is not None
    data = default_rules()
    stage_of(data, "early_notice")["clock_start"] = "resolved_at"
    load(data, default_destination, staff_actor)
    row = report(incident, "early_notice")
    assert (row.clock_started_at, row.due_at, row.next_attempt_at) == (None, None, None)
    assert row.status == ReportStatus.PENDING


def test_a_tightened_deadline_pulls_a_retry_back_within_it(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    row = report(incident, "early_notice")
    Report.objects.filter(pk=row.pk).update(attempt_count=2, next_attempt_at=incident.detected_at + 20 * H)
    data = default_rules()
    stage_of(data, "early_notice")["offset"] = "2h"
    load(data, default_destination, staff_actor)
    row.refresh_from_db()
    assert row.due_at == incident.detected_at + 2 * H and row.next_attempt_at <= incident.detected_at + 2 * H + H


def test_a_stage_the_edit_no_longer_owes_stays_open_and_is_flagged_until_owed_again(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    full = report(incident, "full_report")
    data = default_rules()
    sev1(data)["stages"] = [s for s in sev1(data)["stages"] if s["name"] != "full_report"]
    load(data, default_destination, staff_actor, reason="full report folded into early notice")
    full.refresh_from_db()
    assert full.status == ReportStatus.AWAITING_APPROVAL and full.due_at == incident.detected_at + 72 * H
    assert full.unowed_since is not None and "removed" in full.unowed_note
    [flagged] = AuditEvent.objects.get(action="rule_reports_rescheduled").changes["no_longer_owed"]
    assert flagged["report"] == str(full.public_id) and flagged["why"] == "the stage was removed from the rule"
    # Restoring the stage (same key) picks the same row up again: no duplicate, flag cleared.
    load(default_rules(), default_destination, staff_actor, reason="reverted")
    full.refresh_from_db()
    assert full.unowed_since is None and full.unowed_note == ""
    assert Report.objects.filter(incident=incident, stage_key="full_report").count() == 1
    last = AuditEvent.objects.filter(action="rule_reports_rescheduled").latest("id")
    assert [item["report"] for item in last.changes["owed_again"]] == [str(full.public_id)]


@pytest.mark.parametrize(("edit", "why"), [
    (lambda rule: rule.update(is_active=False), "the rule is inactive"),
    (lambda rule: rule.update(min_severity="SEV-0", max_severity="SEV-0"), "the incident no longer matches the rule"),
])
def test_deactivating_or_narrowing_a_rule_flags_its_open_stages_without_closing_them(
        default_destination, staff_actor, edit, why):
    incident = make_incident(severity="SEV-1")
    data = default_rules()
    edit(sev1(data))
    load(data, default_destination, staff_actor)
    rows = Report.objects.filter(incident=incident, rule__name="sev1-critical")
    assert rows.exists() and all(r.status in (ReportStatus.PENDING, ReportStatus.AWAITING_APPROVAL) for r in rows)
    assert all(r.unowed_since is not None and why in r.unowed_note for r in rows)


def test_the_clock_board_shows_and_filters_stages_no_longer_owed(client, staff_user, default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    data = default_rules()
    sev1(data)["is_active"] = False
    load(data, default_destination, staff_actor)
    login_verified(client, staff_user)
    page = client.get(reverse("admin:reporting_report_changelist") + "?unowed=yes").content.decode()
    assert "rule no longer owes it" in page and incident.reference in page
    assert "the rule is inactive" in page


def test_rescheduling_thousands_costs_the_same_statements_as_a_few(default_destination, staff_actor):
    rule = ReportingRule.objects.get(destination=default_destination, name="sev1-critical")

    def statements() -> int:
        RuleStage.objects.filter(rule=rule, key="early_notice").update(
            offset=RuleStage.objects.get(rule=rule, key="early_notice").offset + H)
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            rule_reschedule_open_reports(rule=rule, actor=staff_actor)
        return len(queries)

    make_incident(severity="SEV-1")
    few = statements()
    for _ in range(12):
        make_incident(severity="SEV-1")
    assert statements() == few
    assert Report.objects.filter(rule=rule, stage_key="early_notice").values("due_at").distinct().count() == 13


@pytest.mark.django_db(transaction=True)
def test_rescheduling_outside_a_transaction_is_refused(default_destination, staff_actor):
    rule = ReportingRule.objects.get(destination=default_destination, name="sev1-critical")
    with pytest.raises(RuntimeError):
        rule_reschedule_open_reports(rule=rule, actor=staff_actor)


# --- (b) a stage's key is its identity ----------------------------------------------------------------


def test_renaming_a_stage_relabels_the_open_report_and_opens_no_duplicate(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    data = default_rules()
    stage_of(data, "early_notice").update(key="early_notice", name="early_warning")
    load(data, default_destination, staff_actor)
    row = report(incident, "early_notice")
    assert row.stage_name == "early_warning"
    incident_update(incident=incident, actor=staff_actor, fields={"severity": "SEV-1", "summary": "changed"})
    assert Report.objects.filter(incident=incident, rule__name="sev1-critical").count() == 3
    [relabelled] = AuditEvent.objects.get(action="rule_reports_rescheduled").changes["relabelled"]
    assert relabelled["name"] == ["early_notice", "early_warning"]
    # A new incident opens the stage under its new name and the same key.
    assert report(make_incident(severity="SEV-1"), "early_notice").stage_name == "early_warning"


def test_a_renamed_stage_keeps_its_row_so_reports_keep_their_link(default_destination, staff_actor):
    incident = make_incident(severity="SEV-1")
    stage_pk = report(incident, "full_report").stage_id
    data = default_rules()
    stage_of(data, "full_report").update(key="full_report", name="notification")
    # Reordering at the same time must not trip the unique (rule, position) halfway.
    stages = sev1(data)["stages"]
    stages[0], stages[1] = stages[1], stages[0]
    load(data, default_destination, staff_actor)
    assert report(incident, "full_report").stage_id == stage_pk
    assert RuleStage.objects.get(pk=stage_pk).name == "notification"


def test_export_and_load_round_trip_the_keys(default_destination, staff_actor):
    data = default_rules()
    stage_of(data, "early_notice").update(key="early_notice", name="early_warning")
    load(data, default_destination, staff_actor)
    exported = rules_export(destination=default_destination)
    assert stage_of(exported, "early_warning")["key"] == "early_notice"
    load(copy.deepcopy(exported), default_destination, staff_actor)
    assert rules_export(destination=default_destination) == exported


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s[1].update(key=s[0]["key"]), "stage keys must be unique"),
    (lambda s: s[0].update(key="no spaces"), "letters, digits"),
    (lambda s: s[0].update(key=""), "letters, digits"),
    (lambda s: s[0].update(key="x" * 51), "letters, digits"),
    (lambda s: s[0].update(name="bad/name"), "letters, digits"),
])
def test_bad_stage_keys_are_refused_and_change_nothing(default_destination, staff_actor, change, message):
    incident = make_incident(severity="SEV-1")
    before = list(Report.objects.filter(incident=incident).values_list("stage_key", "stage_name", "due_at"))
    data = default_rules()
    for stage in sev1(data)["stages"]:
        stage.setdefault("key", stage["name"])
    change(sev1(data)["stages"])
    stage_of(data, "full_report")["offset"] = "1h"  # would move a deadline if anything were written
    with pytest.raises(ValidationError, match=message):
        load(data, default_destination, staff_actor)
    assert list(Report.objects.filter(incident=incident).values_list("stage_key", "stage_name", "due_at")) == before


def test_a_rule_named_twice_in_one_file_is_refused(default_destination, staff_actor):
    data = default_rules()
    data["rules"].append(copy.deepcopy(sev1(data)))
    with pytest.raises(ValidationError, match="appears twice"):
        load(data, default_destination, staff_actor)


# --- the admin form ---------------------------------------------------------------------------------


def test_an_admin_rule_edit_reschedules_and_relabels_at_once(client, staff_user, default_destination):
    incident = make_incident(severity="SEV-1")
    login_verified(client, staff_user)
    rule = ReportingRule.objects.get(destination=default_destination, name="sev1-critical")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    form = scrape(client.get(url), "reportingrule_form")
    index = next(i for i in range(4) if form[f"stages-{i}-name"] == ["early_notice"])
    response = submit(client, url, {f"stages-{index}-offset": "6h", f"stages-{index}-name": "early_warning",
                                    "change_reason": "tighter"}, form_id="reportingrule_form")
    assert response.status_code == 302, response.context and response.context["errors"]
    row = report(incident, "early_notice")
    assert row.stage_name == "early_warning" and row.due_at == incident.detected_at + 6 * H
    event = AuditEvent.objects.get(action="rule_reports_rescheduled")
    assert event.actor_user == staff_user and event.reason == "tighter"


def test_an_admin_stage_key_cannot_change_once_saved(client, staff_user, default_destination):
    login_verified(client, staff_user)
    rule = ReportingRule.objects.get(destination=default_destination, name="sev1-critical")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    response = submit(client, url, {"stages-0-key": "something-else"}, form_id="reportingrule_form")
    assert response.status_code == 200
    assert "key" in response.context["inline_admin_formsets"][0].formset.forms[0].errors
    assert set(RuleStage.objects.filter(rule=rule).values_list("key", flat=True)) == {
        "early_notice", "full_report", "supplemental", "final"}


def test_a_new_admin_stage_without_a_key_takes_its_name(client, staff_user, default_destination):
    login_verified(client, staff_user)
    rule = ReportingRule.objects.get(destination=default_destination, name="sev2-high")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    response = submit(client, url, {"stages-TOTAL_FORMS": "4", "stages-3-name": "closing", "stages-3-kind": "final",
                                    "stages-3-position": "4", "stages-3-clock_start": "resolved_at",
                                    "stages-3-offset": "60d", "stages-3-rule": str(rule.pk)},
                      form_id="reportingrule_form")
    assert response.status_code == 302, response.context and response.context["errors"]
    assert RuleStage.objects.get(rule=rule, name="closing").key == "closing"


def test_the_commands_round_trip_keys_and_record_the_reason(default_destination, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    incident = make_incident(severity="SEV-1")
    out = StringIO()
    call_command("rules_export", "--destination", default_destination.name, stdout=out)
    path = tmp_path / "rules.yaml"
    path.write_text(out.getvalue().replace("name: early_notice", "name: early_warning"), encoding="utf-8")
    call_command("rules_load", str(path), "--reason", "renamed per regulator", stdout=StringIO())
    assert report(incident, "early_notice").stage_name == "early_warning"
    assert AuditEvent.objects.get(action="rule_reports_rescheduled").reason == "renamed per regulator"


# --- (d) what a rule write newly owes opens at once for the incidents in flight ------------------------


def test_a_stage_added_to_a_rule_opens_for_incidents_in_flight_once_the_edit_commits(
    default_destination, staff_actor, django_capture_on_commit_callbacks
):
    from incidents.services.workflow import incident_decide_reportability

    in_flight = make_incident(severity="SEV-1", title="in flight")
    not_reportable = make_incident(severity="SEV-1", title="decided not reportable")
    incident_decide_reportability(incident=not_reportable, actor=staff_actor, reportable=False, reason="test data")
    data = default_rules()
    sev1(data)["stages"].append({"name": "regulator_notice", "kind": "update", "clock_start": "detected_at",
                                 "offset": "48h", "requires_approval": False})
    with django_capture_on_commit_callbacks(execute=True):
        load(data, default_destination, staff_actor)
    added = report(in_flight, "regulator_notice")
    assert added.due_at == in_flight.detected_at + 48 * H and added.status == ReportStatus.PENDING
    assert not Report.objects.filter(incident=not_reportable, stage_key="regulator_notice").exists()
    # Running again (another edit) opens nothing twice.
    with django_capture_on_commit_callbacks(execute=True):
        load(data, default_destination, staff_actor, reason="again")
    assert Report.objects.filter(incident=in_flight, stage_key="regulator_notice").count() == 1


def test_a_new_destinations_rules_reach_incidents_already_in_flight(default_destination, staff_actor,
                                                                     django_capture_on_commit_callbacks):
    from tests.reporting.conftest import make_destination

    in_flight = make_incident(severity="SEV-1")
    with django_capture_on_commit_callbacks(execute=True):
        newcomer = make_destination("authority-new")
    assert Report.objects.filter(incident=in_flight, destination=newcomer, stage_key="early_notice").exists()


def test_a_rule_write_that_rolls_back_opens_nothing(default_destination, staff_actor,
                                                    django_capture_on_commit_callbacks):
    in_flight = make_incident(severity="SEV-1")
    data = default_rules()
    sev1(data)["stages"].append({"name": "regulator_notice", "kind": "update", "clock_start": "detected_at",
                                 "offset": "48h", "requires_approval": False})
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        with transaction.atomic():
            load(data, default_destination, staff_actor)
            raise RuntimeError("the rest of the change failed")
    assert not callbacks
    assert not Report.objects.filter(incident=in_flight, stage_key="regulator_notice").exists()
