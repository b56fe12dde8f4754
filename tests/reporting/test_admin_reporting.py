"""The outbound staff admin: the clock board, report decisions, destinations, rules, escalations, index counts.

Actions are posted the way the board's buttons post them; forms are scraped and posted back whole.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import ActorKind
from incidents.models import AuditEvent
from reporting.admin.clock import highest_escalation, humanize_duration, time_left_html
from reporting.choices import Disclosure, ReportStatus
from reporting.encryption import mask
from reporting.models import Destination, Escalation, Report, ReportingRule
from reporting.portal.services.authorities import authority_get_or_create
from reporting.services.escalation import escalation_raise
from tests.conftest import make_incident
from tests.incidents.test_admin import messages_of, scrape, submit
from tests.reporting.conftest import make_destination, new_webhook_secret

pytestmark = pytest.mark.django_db

BOARD = "admin:reporting_report_changelist"


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def hours_ago(hours: float):
    return timezone.now() - timedelta(hours=hours)


def stage(incident, name: str) -> Report:
    return Report.objects.get(incident=incident, stage_name=name)


def act(client, action: str, reports, follow=True, **extra):
    data = {"action": action, "_selected_action": [r.pk for r in reports], "index": 0, **extra}
    return client.post(reverse(BOARD) + "?status=all", data, follow=follow)


def report_url(report: Report) -> str:
    return reverse("admin:reporting_report_change", args=[report.pk])


# --- The clock board ------------------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(hours=5, minutes=12, seconds=30), "5 h 12 min"),
    (timedelta(hours=2), "2 h"),
    (timedelta(minutes=7), "7 min"),
    (timedelta(seconds=20), "under 1 min"),
    (timedelta(days=3, hours=4, minutes=59), "3 d 4 h"),
    (timedelta(days=2), "2 d"),
])
def test_humanized_durations(delta, text):
    assert humanize_duration(delta) == text


def test_time_left_states():
    now = timezone.now()
    assert time_left_html(Report(status="pending", due_at=now + timedelta(hours=5, minutes=12)), now) == (
        '<span class="clock-left">5 h 12 min</span>')
    assert time_left_html(Report(status="failed", due_at=now - timedelta(hours=2)), now) == (
        '<strong class="clock-overdue">overdue by 2 h</strong>')
    assert "clock not started" in time_left_html(Report(status="awaiting_approval", due_at=None), now)
    assert "delivered late" in time_left_html(Report(status="delivered", due_at=now - timedelta(hours=1), late=True),
                                              now)
    assert highest_escalation(["window_50", "overdue", "window_90"]) == "Overdue"
    assert highest_escalation(["window_50", "window_75"]) == "75 % of the window used"
    assert highest_escalation(["window_60"]) == "60 % of the window used" and highest_escalation([]) == ""


def test_board_lists_open_stages_first_by_deadline_with_time_left(staff_client, default_destination):
    late = make_incident(severity="SEV-1", detected_at=hours_ago(30), title="Late one")
    fresh = make_incident(severity="SEV-0", detected_at=hours_ago(1), title="Fresh one")
    delivered = stage(fresh, "initial")
    Report.objects.filter(pk=delivered.pk).update(status=ReportStatus.DELIVERED, delivered_at=timezone.now(),
                                                  payload="{}", payload_sha256="0" * 64)

    response = staff_client.get(reverse(BOARD))
    rows = list(response.context["cl"].result_list)
    assert rows and all(r.status in ("awaiting_approval", "pending", "failed") for r in rows)
    dues = [r.due_at for r in rows]
    started = [d for d in dues if d is not None]
    assert started == sorted(started) and dues == started + [None] * (len(dues) - len(started))
    assert rows[0] == stage(late, "early_notice")  # the overdue one leads
    html = response.content.decode()
    assert '<strong class="clock-overdue">overdue by 6 h</strong>' in html
    assert '<span class="clock-left">1 d 17 h</span>' in html  # full_report: 72 h from detection, 30 h gone
    assert "clock not started" in html  # final stages wait for resolution
    assert reverse("admin:incidents_incident_change", args=[late.pk]) in html and late.reference in html
    assert "early_notice#1" in html

    everything = list(staff_client.get(reverse(BOARD), {"status": "all"}).context["cl"].result_list)
    assert everything[-1] == delivered and len(everything) == len(rows) + 1
    overdue = list(staff_client.get(reverse(BOARD), {"overdue": "yes"}).context["cl"].result_list)
    assert overdue == [stage(late, "early_notice")]


def test_board_shows_attempt_count_last_error_and_highest_escalation(staff_client, default_destination):
    incident = make_incident(severity="SEV-1", detected_at=hours_ago(30))
    report = stage(incident, "early_notice")
    Report.objects.filter(pk=report.pk).update(status=ReportStatus.FAILED, attempt_count=3,
                                               last_error="HTTP 400: schema rejected\nfull body follows")
    for level in ("window_50", "window_90", "overdue"):
        escalation_raise(report=report, level=level, message="m")
    html = staff_client.get(reverse(BOARD)).content.decode()
    assert "HTTP 400: schema rejected" in html and "full body follows</span>" not in html
    assert ">Overdue<" in html


def test_board_query_count_is_bounded(staff_client, default_destination, django_assert_max_num_queries):
    for n in range(10):
        incident = make_incident(severity="SEV-1", detected_at=hours_ago(30 + n), title=f"Incident {n}")
        escalation_raise(report=stage(incident, "early_notice"), level="overdue", message="m")
    assert Report.objects.count() >= 30
    with django_assert_max_num_queries(8):  # 7 today: session, user, destination filter, 2 counts, page, escalations
        response = staff_client.get(reverse(BOARD), {"status": "all"})
    assert len(response.context["cl"].result_list) >= 30


# --- Report decisions -----------------------------------------------------------------------------


def test_approve_with_a_disclosure_level_up_to_the_destinations_maximum(staff_client, staff_user):
    make_destination(max_disclosure=Disclosure.RAW_CONTENT)
    report = stage(make_incident(severity="SEV-1"), "full_report")
    assert report.status == ReportStatus.AWAITING_APPROVAL

    page = act(staff_client, "approve_reports", [report])
    assert page.status_code == 200 and 'value="raw_content"' in page.content.decode()
    act(staff_client, "approve_reports", [report], apply="yes", disclosure="raw_content", reason="legal ok'd it")
    report.refresh_from_db()
    assert (report.status, report.disclosure, report.approved_by) == ("pending", "raw_content", staff_user)
    event = AuditEvent.objects.get(action="report_approved")
    assert (event.actor_user, event.reason) == (staff_user, "legal ok'd it")


def test_approval_above_the_destinations_maximum_is_refused(staff_client):
    digests_only = make_destination("authority-a")
    make_destination("authority-b", max_disclosure=Disclosure.RAW_CONTENT)
    incident = make_incident(severity="SEV-1")
    to_a = Report.objects.get(incident=incident, destination=digests_only, stage_name="full_report")
    to_b = Report.objects.exclude(pk=to_a.pk).get(incident=incident, stage_name="full_report")

    page = act(staff_client, "approve_reports", [to_a])
    assert 'value="raw_content"' not in page.content.decode()  # not even offered
    page = act(staff_client, "approve_reports", [to_a], apply="yes", disclosure="raw_content")
    assert page.status_code == 200 and page.context["form"].errors["disclosure"]
    to_a.refresh_from_db()
    assert to_a.status == ReportStatus.AWAITING_APPROVAL

    # Both selected: raw content is offered (B accepts it); A's own limit still refuses it, B goes.
    response = act(staff_client, "approve_reports", [to_a, to_b], apply="yes", disclosure="raw_content")
    to_a.refresh_from_db()
    to_b.refresh_from_db()
    assert (to_a.status, to_b.status) == (ReportStatus.AWAITING_APPROVAL, ReportStatus.PENDING)
    texts = messages_of(response)
    assert "Approved 1 report." in texts
    assert any(t.startswith(f"{incident.reference} full_report#1 → authority-a: ") and "at most digests" in t
               for t in texts), texts


def test_withdraw_needs_a_reason_and_is_audited(staff_client, staff_user, default_destination):
    report = stage(make_incident(severity="SEV-1"), "early_notice")
    page = act(staff_client, "withdraw_reports", [report])
    assert page.status_code == 200 and "withdrawn stage is never sent" in page.content.decode()
    page = act(staff_client, "withdraw_reports", [report], apply="yes", reason="  ")
    assert page.context["form"].errors["reason"]
    report.refresh_from_db()
    assert report.status == ReportStatus.PENDING

    act(staff_client, "withdraw_reports", [report], apply="yes", reason="opened against the wrong authority")
    report.refresh_from_db()
    assert (report.status, report.withdrawn_by, report.withdrawn_reason) == (
        "withdrawn", staff_user, "opened against the wrong authority")
    event = AuditEvent.objects.get(action="report_withdrawn")
    assert (event.actor_kind, event.actor_user, event.reason) == (
        ActorKind.USER, staff_user, "opened against the wrong authority")


def test_send_now_returns_a_failed_report_to_pending(staff_client, default_destination):
    report = stage(make_incident(severity="SEV-1"), "early_notice")
    Report.objects.filter(pk=report.pk).update(status=ReportStatus.FAILED, failed_at=timezone.now(),
                                               next_attempt_at=None, last_error="HTTP 400")
    response = act(staff_client, "send_reports_now", [report])
    report.refresh_from_db()
    assert report.status == ReportStatus.PENDING and report.next_attempt_at is not None
    assert "Queued for sending 1 report." in messages_of(response)
    assert AuditEvent.objects.filter(action="report_resent").exists()


def test_send_now_of_an_overdue_stage_offers_a_late_reason(staff_client, default_destination):
    report = stage(make_incident(severity="SEV-1", detected_at=hours_ago(30)), "early_notice")
    page = act(staff_client, "send_reports_now", [report])
    assert page.status_code == 200 and 'name="late_reason"' in page.content.decode()
    act(staff_client, "send_reports_now", [report], apply="yes", late_reason="receiver was down all weekend")
    report.refresh_from_db()
    assert report.late_reason == "receiver was down all weekend"


def test_set_late_reason_and_refusal_once_frozen(staff_client, default_destination):
    report = stage(make_incident(severity="SEV-1"), "early_notice")
    act(staff_client, "set_late_reason", [report], apply="yes", reason="awaiting legal review")
    report.refresh_from_db()
    assert report.late_reason == "awaiting legal review"
    Report.objects.filter(pk=report.pk).update(frozen_at=timezone.now(), payload="{}", payload_sha256="0" * 64)
    response = act(staff_client, "set_late_reason", [report], apply="yes", reason="changed my mind")
    assert any("already frozen" in text for text in messages_of(response))
    report.refresh_from_db()
    assert report.late_reason == "awaiting legal review"


def test_change_page_buttons_post_the_action_and_come_back(staff_client, default_destination):
    report = stage(make_incident(severity="SEV-1"), "full_report")
    page = staff_client.get(report_url(report)).content.decode()
    assert 'value="approve_reports"' in page and 'value="withdraw_reports"' in page
    assert 'value="send_reports_now"' not in page  # awaiting approval: approving is what sends it
    response = act(staff_client, "approve_reports", [report], follow=False, apply="yes", disclosure="digests",
                   _from_change=report.pk)
    assert response.status_code == 302 and response["Location"] == report_url(report)


def test_reports_are_read_only(staff_client, default_destination):
    report = stage(make_incident(severity="SEV-1"), "early_notice")
    assert staff_client.post(report_url(report), {"late_reason": "x"}).status_code == 403
    assert staff_client.get(reverse("admin:reporting_report_add")).status_code == 403
    assert staff_client.get(reverse("admin:reporting_report_delete", args=[report.pk])).status_code == 403
    page = staff_client.get(report_url(report)).content.decode()
    assert 'name="_save"' not in page and "delete_selected" not in staff_client.get(reverse(BOARD)).content.decode()


def test_preview_shows_the_document_without_freezing(staff_client, default_destination):
    incident = make_incident(severity="SEV-1", title="Intrusion tooling for a water utility")
    report = stage(incident, "early_notice")
    page = staff_client.get(report_url(report))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="preview-json"' in html and "Intrusion tooling for a water utility" in html
    assert 'id="preview-sha256"' in html
    report.refresh_from_db()
    assert report.frozen_at is None and report.payload == "" and report.payload_sha256 == ""


def test_a_failing_preview_is_a_message_not_a_500(staff_client, default_destination, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("reporting.packaging.document.build_document", broken)
    report = stage(make_incident(severity="SEV-1"), "early_notice")
    page = staff_client.get(report_url(report))
    assert page.status_code == 200 and "The preview could not be built: RuntimeError: boom" in page.content.decode()


def test_a_frozen_report_shows_its_payload_digest_and_key(staff_client, default_destination):
    report = stage(make_incident(severity="SEV-1"), "early_notice")
    Report.objects.filter(pk=report.pk).update(
        frozen_at=timezone.now(), payload='{"b":1,"a":"<x>"}', payload_sha256="ab" * 32, signing_key_id="key-2026")
    html = staff_client.get(report_url(report)).content.decode()
    assert 'id="payload-json"' in html and "&lt;x&gt;" in html and "ab" * 32 in html and "key-2026" in html
    assert 'id="preview-json"' not in html


# --- Destinations ---------------------------------------------------------------------------------


def destination_form(**changes) -> dict:
    # Destinations pick an existing authority in the admin (the command line makes one by name).
    cisa = authority_get_or_create(actor=Actor.system("tests"), name="CISA")
    return {"name": "cisa", "authority": cisa.pk, "transport": "webhook", "address": "http://127.0.0.1:9/cisa",
            "max_disclosure": "digests", "tlp": "TLP:AMBER+STRICT", **changes}


def test_destination_add_with_generated_secret_shows_it_once_and_audits_only_a_mask(staff_client, staff_user):
    response = submit(staff_client, reverse("admin:reporting_destination_add"),
                      destination_form(generate_secret="on"), form_id="destination_form")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and len(secret) == 50 and f'value="{secret}"' in response.content.decode()
    destination = Destination.objects.get(name="cisa")
    assert destination.get_secret() == secret
    event = AuditEvent.objects.get(action="destination_created")
    assert event.actor_user == staff_user and event.changes["secret"] == mask(secret)
    assert secret not in json.dumps(event.changes)
    again = staff_client.get(reverse("admin:reporting_destination_change", args=[destination.pk]))
    assert secret not in again.content.decode() and "set (never shown)" in again.content.decode()


def test_destination_add_needs_a_webhook_secret(staff_client):
    response = submit(staff_client, reverse("admin:reporting_destination_add"), destination_form(),
                      form_id="destination_form")
    assert response.status_code == 200 and response.context["adminform"].form.errors["secret"]
    assert not Destination.objects.exists()


def test_destination_change_goes_through_destination_update_and_is_audited(staff_client, staff_user):
    destination = make_destination(rules=None)
    new_secret = new_webhook_secret()
    url = reverse("admin:reporting_destination_change", args=[destination.pk])
    eu = authority_get_or_create(actor=Actor.system("tests"), name="Authority A (EU)")
    response = submit(staff_client, url, {"authority": eu.pk, "secret": new_secret,
                                          "change_reason": "rotated after handover"}, form_id="destination_form")
    assert response.status_code == 302, response.context and response.context["errors"]
    destination.refresh_from_db()
    assert destination.authority == eu and destination.get_secret() == new_secret
    event = AuditEvent.objects.get(action="destination_updated")
    assert event.actor_user == staff_user and event.reason == "rotated after handover"
    assert event.changes["authority"] == ["Authority authority-a", "Authority A (EU)"]
    assert event.changes["secret"] == ["(replaced)", mask(new_secret)] and new_secret not in json.dumps(event.changes)
    assert set(event.changes) == {"authority", "secret"}


def test_lowering_disclosure_is_allowed_and_says_which_approvals_it_degrades(staff_client):
    destination = make_destination(max_disclosure=Disclosure.RAW_CONTENT)
    report = stage(make_incident(severity="SEV-1"), "full_report")
    act(staff_client, "approve_reports", [report], apply="yes", disclosure="raw_content")
    url = reverse("admin:reporting_destination_change", args=[destination.pk])
    response = submit(staff_client, url, {"max_disclosure": "digests"}, form_id="destination_form", follow=True)
    assert any("1 open report(s) approved with raw content will now be sent with digests only" in text
               for text in messages_of(response))
    destination.refresh_from_db()
    assert destination.max_disclosure == Disclosure.DIGESTS
    event = AuditEvent.objects.get(action="destination_updated")
    assert event.changes["max_disclosure"] == ["raw_content", "digests"] and event.changes["degraded_open_reports"] == 1


def test_destinations_cannot_be_deleted(staff_client, default_destination):
    url = reverse("admin:reporting_destination_delete", args=[default_destination.pk])
    assert staff_client.get(url).status_code == 403


# --- Rules ----------------------------------------------------------------------------------------


def test_rule_edit_with_stages_is_one_audit_event_with_the_whole_rule(staff_client, staff_user, default_destination):
    rule = ReportingRule.objects.get(destination=default_destination, name="sev1-critical")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    page = staff_client.get(url)
    assert "sev1-critical" in page.content.decode() and 'id="rule-yaml"' in page.content.decode()
    form = scrape(page, "reportingrule_form")
    assert form["stages-0-name"] == ["early_notice"] and form["stages-0-offset"] == ["1d"]
    # Swap the first two stages' positions too: the unique (rule, position) must not trip halfway.
    response = submit(staff_client, url, {"stages-0-offset": "12h", "stages-0-position": "2", "stages-1-position": "1",
                                          "description": "Tighter after review", "change_reason": "policy v2"},
                      form_id="reportingrule_form")
    assert response.status_code == 302, response.context and response.context["errors"]
    rule.refresh_from_db()
    stages = {s.name: s for s in rule.stages.all()}
    assert stages["early_notice"].offset == timedelta(hours=12) and stages["early_notice"].position == 2
    assert stages["full_report"].position == 1
    event = AuditEvent.objects.get(action="rule_changed")
    assert (event.actor_user, event.reason) == (staff_user, "policy v2")
    assert event.changes["changed"] == ["description", "stages"]
    assert event.changes["rule"]["stages"][1] == {"name": "early_notice", "kind": "initial",
                                                 "clock_start": "detected_at", "offset": "12h",
                                                 "requires_approval": False}
    assert event.changes["before"]["stages"][0]["offset"] == "1d"


def test_saving_a_rule_unchanged_records_nothing(staff_client, default_destination):
    rule = ReportingRule.objects.get(destination=default_destination, name="sev2-high")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    assert submit(staff_client, url, {}, form_id="reportingrule_form").status_code == 302
    assert not AuditEvent.objects.filter(action="rule_changed").exists()


def test_bad_rule_values_are_form_errors(staff_client, default_destination):
    rule = ReportingRule.objects.get(destination=default_destination, name="sev2-high")
    url = reverse("admin:reporting_reportingrule_change", args=[rule.pk])
    response = submit(staff_client, url, {"escalation_points": "0.5, 1.5", "max_severity": "SEV-4",
                                          "stages-0-offset": "soon"}, form_id="reportingrule_form")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "escalation_points" in errors and "max_severity" in errors
    assert "offset" in response.context["inline_admin_formsets"][0].formset.forms[0].errors


def test_a_rule_with_reports_cannot_be_deleted_and_says_why(staff_client, default_destination):
    make_incident(severity="SEV-1")
    rule = ReportingRule.objects.get(destination=default_destination, name="sev1-critical")
    response = staff_client.get(reverse("admin:reporting_reportingrule_delete", args=[rule.pk]), follow=True)
    assert any("cannot be deleted" in text and "report(s)" in text for text in messages_of(response))
    assert ReportingRule.objects.filter(pk=rule.pk).exists()


def test_a_rule_without_reports_is_deleted_through_the_service(staff_client, staff_user, default_destination):
    rule = ReportingRule.objects.get(destination=default_destination, name="sev2-high")
    url = reverse("admin:reporting_reportingrule_delete", args=[rule.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 302
    assert not ReportingRule.objects.filter(pk=rule.pk).exists()
    event = AuditEvent.objects.get(action="rule_deleted")
    assert event.actor_user == staff_user and event.changes["rule"]["name"] == "sev2-high"


# --- Escalations and the index --------------------------------------------------------------------


def test_acknowledging_escalations(staff_client, staff_user, default_destination):
    report = stage(make_incident(severity="SEV-1", detected_at=hours_ago(30)), "early_notice")
    old = escalation_raise(report=report, level="window_50", message="half")
    new = escalation_raise(report=report, level="overdue", message="late")
    Escalation.objects.filter(pk=old.pk).update(acknowledged_by=staff_user, acknowledged_at=timezone.now())
    listing = staff_client.get(reverse("admin:reporting_escalation_changelist"))
    assert list(listing.context["cl"].result_list) == [new, old]  # unacknowledged first

    data = {"action": "acknowledge_escalations", "_selected_action": [new.pk, old.pk], "index": 0}
    response = staff_client.post(reverse("admin:reporting_escalation_changelist"), data, follow=True)
    new.refresh_from_db()
    assert new.acknowledged_by == staff_user and new.acknowledged_at is not None
    texts = messages_of(response)
    assert "Acknowledged 1 escalation." in texts and any("already acknowledged by stella" in t for t in texts)
    event = AuditEvent.objects.get(action="escalation_acknowledged")
    assert event.actor_user == staff_user and event.changes["level"] == "overdue" and event.incident == report.incident


def test_index_counts_link_to_the_filtered_lists(staff_client, default_destination):
    late = make_incident(severity="SEV-1", detected_at=hours_ago(30))  # early notice overdue; full report in 42 h
    make_incident(severity="SEV-1", detected_at=hours_ago(1))  # early notice due in 23 h
    escalation_raise(report=stage(late, "early_notice"), level="overdue", message="late")
    page = staff_client.get(reverse("admin:index"))
    assert (page.context["overdue_count"], page.context["due_soon_count"], page.context["unacknowledged_count"]) == (
        1, 1, 1)
    html = page.content.decode()
    assert f'{reverse(BOARD)}?overdue=yes' in html and f'{reverse(BOARD)}?due_within=24h' in html
    assert f'{reverse("admin:reporting_escalation_changelist")}?acknowledged=no' in html
    assert len(staff_client.get(reverse(BOARD), {"due_within": "24h"}).context["cl"].result_list) == 1
    unacknowledged = staff_client.get(reverse("admin:reporting_escalation_changelist"), {"acknowledged": "no"})
    assert len(unacknowledged.context["cl"].result_list) == 1


# --- Secrets never leave through a page -----------------------------------------------------------


def test_no_admin_page_shows_a_secret_or_pseudonym_key(staff_client):
    secret = new_webhook_secret()
    destination = make_destination(secret=secret, max_disclosure=Disclosure.RAW_CONTENT)
    incident = make_incident(severity="SEV-1", detected_at=hours_ago(30))
    report = stage(incident, "early_notice")
    escalation = escalation_raise(report=report, level="overdue", message="late")
    rule = ReportingRule.objects.filter(destination=destination).first()
    forbidden = {secret, secret.removeprefix("whsec_"), destination.get_pseudonym_key().hex(),
                 destination.secret_encrypted, destination.pseudonym_key_encrypted}
    event = AuditEvent.objects.get(action="destination_created")
    pages = [
        reverse("admin:index"), reverse(BOARD), reverse(BOARD) + "?status=all", report_url(report),
        reverse("admin:reporting_destination_changelist"), reverse("admin:reporting_destination_add"),
        reverse("admin:reporting_destination_change", args=[destination.pk]),
        reverse("admin:reporting_reportingrule_changelist"),
        reverse("admin:reporting_reportingrule_change", args=[rule.pk]),
        reverse("admin:reporting_escalation_changelist"),
        reverse("admin:reporting_escalation_change", args=[escalation.pk]),
        reverse("admin:incidents_auditevent_changelist"),
        reverse("admin:incidents_auditevent_change", args=[event.pk]),
        reverse("admin:incidents_incident_change", args=[incident.pk]),
    ]
    pages.append(None)  # the approve page too
    for url in pages:
        if url is None:
            response = act(staff_client, "approve_reports", [stage(incident, "full_report")])
        else:
            response = staff_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not [value for value in forbidden if value in html], url
