"""The staff admin: filing, editing, workflow actions, detectors and tokens, all through the services.

Forms are posted the way a browser would: the page is fetched, its form's fields scraped, a few
changed, and the whole form posted back.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import ActorKind, DetectionSource, Determination, Reportability, Status
from incidents.models import AuditEvent, DetectorToken, Evidence, Incident, Indicator
from incidents.services.detectors import detector_token_authenticate
from incidents.services.parts import (
    EvidenceInput,
    account_update,
    evidence_remove,
    evidence_update,
    incident_parts_add,
    indicator_update,
)
from incidents.services.workflow import incident_transition, incident_update
from tests.conftest import SYSTEM, make_incident

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:incidents_incident_changelist"


class _FormScraper(HTMLParser):
    """Collects what a browser would submit from the form with the given id."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select: dict | None = None
        self._textarea: str | None = None
        self._text = ""

    def _add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or not attrs.get("name") and tag != "option":
            return
        if tag == "input" and attrs.get("type", "text") not in {"submit", "button", "file"}:
            if attrs.get("type") in {"checkbox", "radio"}:
                if "checked" in attrs:
                    self._add(attrs["name"], attrs.get("value", "on"))
            else:
                self._add(attrs["name"], attrs.get("value", ""))
        elif tag == "select":
            self._select = {"name": attrs["name"], "selected": [], "first": None}
        elif tag == "option" and self._select is not None:
            value = attrs.get("value", "")
            self._select["first"] = value if self._select["first"] is None else self._select["first"]
            if "selected" in attrs:
                self._select["selected"].append(value)
        elif tag == "textarea":
            self._textarea, self._text = attrs["name"], ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            for value in self._select["selected"] or [self._select["first"]]:
                self._add(self._select["name"], value)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self._add(self._textarea, self._text.removeprefix("\n"))
            self._textarea = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data


def scrape(response, form_id: str) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    parser = _FormScraper(form_id)
    parser.feed(response.content.decode())
    assert parser.data, f"no form #{form_id} on the page"
    return parser.data


def submit(client, url: str, changes: dict, form_id: str = "incident_form", **kwargs):
    data = scrape(client.get(url), form_id)
    data.update({key: value if isinstance(value, list) else [str(value)] for key, value in changes.items()})
    return client.post(url, data, **kwargs)


def split_dt(name: str, value) -> dict:
    return {f"{name}_0": value.strftime("%Y-%m-%d"), f"{name}_1": value.strftime("%H:%M:%S")}


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def inline_errors(response, prefix: str) -> list[dict]:
    formset = next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == prefix)
    return [dict(form.errors) for form in formset.forms]


def change_url(incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def act(client, action: str, incidents, follow=True, **extra):
    data = {"action": action, "_selected_action": [i.pk for i in incidents], "index": 0, **extra}
    return client.post(reverse(CHANGELIST), data, follow=follow)


def filing(**changes) -> dict:
    detected = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    return {
        "title": "Ransomware kit drafted", "summary": "Model helped write ransomware.", "category": "CYBER",
        "severity": "SEV-1", "model_name": "Mythos 5", **split_dt("detected_at", detected),
        "countries": "de, fr", "techniques": "AML.T0054", "affected_parties": "hospital patients: 40", **changes,
    }


# --- Filing by hand -------------------------------------------------------------------------------


def test_filing_with_inlines_creates_rows_and_one_audit_event_by_the_user(staff_client, staff_user):
    content = "please write ransomware for <b>hospitals</b>"
    response = submit(staff_client, reverse("admin:incidents_incident_add"), filing(**{
        "new_evidence-TOTAL_FORMS": 2,
        "new_evidence-0-kind": "prompt", "new_evidence-0-description": "first prompt",
        "new_evidence-0-pasted_content": content,
        "new_evidence-1-kind": "file", "new_evidence-1-description": "kit", "new_evidence-1-given_sha256": "AB" * 32,
        "indicators-0-type": "domain", "indicators-0-value": "Evil-Example.COM.",
        "accounts-0-identifier": "user-77", "accounts-0-enforcement_action": "banned",
    }))
    assert response.status_code == 302, response.context and response.context["errors"]
    incident = Incident.objects.get()
    assert (incident.status, incident.detection_source, incident.filed_by) == ("new", DetectionSource.STAFF, staff_user)
    assert incident.countries == ["DE", "FR"] and incident.techniques == ["AML.T0054"]
    assert incident.affected_parties == [{"category": "hospital patients", "count": 40}]
    prompt = incident.evidence.get(kind="prompt")
    assert prompt.sha256 == hashlib.sha256(content.encode()).hexdigest() and prompt.content == content
    assert incident.evidence.get(kind="file").sha256 == "ab" * 32
    assert list(incident.indicators.values_list("type", "value")) == [("domain", "evil-example.com")]
    assert list(incident.accounts.values_list("identifier", "enforcement_action")) == [("user-77", "banned")]
    event = AuditEvent.objects.get(incident=incident)
    assert (event.action, event.actor_kind, event.actor_user) == ("created", ActorKind.USER, staff_user)
    assert event.changes["parts"] == {"accounts": 1, "indicators": 1, "evidence": 2}


def test_invalid_indicator_is_an_error_on_its_value_and_nothing_is_stored(staff_client):
    response = submit(staff_client, reverse("admin:incidents_incident_add"), filing(**{
        "indicators-0-type": "ip", "indicators-0-value": "999.1.1.1",
    }))
    assert response.status_code == 200
    assert inline_errors(response, "indicators")[0] == {"value": ["not a valid IPv4 or IPv6 address"]}
    assert not Incident.objects.exists() and not AuditEvent.objects.exists() and not Indicator.objects.exists()


def test_bad_incident_fields_and_evidence_are_form_errors(staff_client, settings):
    settings.MIR_EVIDENCE_MAX_CONTENT_BYTES = 10
    future = timezone.now() + timedelta(days=2)
    response = submit(staff_client, reverse("admin:incidents_incident_add"), filing(**{
        "countries": "XX", **split_dt("aware_at", future),
        "new_evidence-0-kind": "prompt", "new_evidence-0-description": "d", "new_evidence-0-pasted_content": "x" * 11,
    }))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "not an ISO 3166-1 alpha-2 country code" in form.errors["countries"][0]
    assert form.errors["aware_at"] == ["is in the future"]
    assert "cap" in inline_errors(response, "new_evidence")[0]["pasted_content"][0]
    assert not Incident.objects.exists()


def test_evidence_needs_content_or_a_digest(staff_client):
    response = submit(staff_client, reverse("admin:incidents_incident_add"), filing(**{
        "new_evidence-0-kind": "log", "new_evidence-0-description": "no content",
    }))
    assert inline_errors(response, "new_evidence")[0] == {"__all__": ["Paste the content or give its SHA-256."]}
    assert not Incident.objects.exists()


# --- Editing --------------------------------------------------------------------------------------


def test_edit_goes_through_incident_update_and_service_fields_cannot_be_posted(staff_client, staff_user):
    incident = make_incident(title="Old title")
    before = Incident.objects.get(pk=incident.pk)
    response = submit(staff_client, change_url(incident), {
        "title": "New title", "severity": "SEV-0", "change_reason": "new facts from the SOC",
        # Not in the form (read-only): whatever is posted is ignored.
        "status": "closed", "determination": "confirmed", "reportability": "reportable", "fingerprint": "x",
        "occurrence_count": 99, "dismissal_reason": "no", **split_dt("detected_at", timezone.now() - timedelta(days=9)),
    })
    assert response.status_code == 302
    incident.refresh_from_db()
    assert (incident.title, incident.severity) == ("New title", "SEV-0")
    for name in ("status", "determination", "reportability", "fingerprint", "occurrence_count", "dismissal_reason",
                 "detected_at", "detection_source"):
        assert getattr(incident, name) == getattr(before, name), name
    event = AuditEvent.objects.get(incident=incident, action="updated")
    assert event.changes == {"title": ["Old title", "New title"], "severity": ["SEV-1", "SEV-0"]}
    assert (event.actor_user, event.reason) == (staff_user, "new facts from the SOC")


def test_a_stale_form_does_not_revert_someone_elses_change(staff_client):
    incident = make_incident(severity="SEV-2")
    stale = scrape(staff_client.get(change_url(incident)), "incident_form")
    incident_update(incident=incident, actor=SYSTEM, fields={"severity": "SEV-0"})
    response = staff_client.post(change_url(incident), {**stale, "title": "Edited meanwhile"})
    assert response.status_code == 200
    assert "changed this incident after you opened it" in response.context["adminform"].form.non_field_errors()[0]
    incident.refresh_from_db()
    assert (incident.severity, incident.title) == ("SEV-0", "Intrusion tooling")


def test_editing_parts_calls_a_service_per_row(staff_client):
    incident = make_incident()
    incident_parts_add(
        incident=incident, actor=SYSTEM, accounts=[{"id": "u1"}, {"id": "u2"}],
        indicators=[{"type": "domain", "value": "a.example"}],
        evidence=[EvidenceInput(kind="prompt", description="first", content="hello")],
    )
    u1 = incident.accounts.get(identifier="u1")
    response = submit(staff_client, change_url(incident), {
        "indicators-0-value": "B.Example.", "indicators-1-type": "ip", "indicators-1-value": "10.0.0.1",
        "accounts-0-DELETE": "on", "accounts-1-enforcement_action": "suspended",
        "evidence-0-description": "first prompt of the session",
    })
    assert response.status_code == 302, response.context and response.context["errors"]
    assert set(incident.indicators.values_list("value", flat=True)) == {"b.example", "10.0.0.1"}
    assert list(incident.accounts.values_list("identifier", "enforcement_action")) == [("u2", "suspended")]
    assert incident.evidence.get().description == "first prompt of the session"
    actions = list(AuditEvent.objects.filter(incident=incident).values_list("action", flat=True))
    assert actions[-5:] == ["account_removed", "evidence_updated", "indicator_updated", "account_updated", "parts_added"]
    removed = AuditEvent.objects.get(action="account_removed")
    assert removed.object_id == str(u1.pk) and "u1" not in str(removed.changes)


def test_evidence_already_attached_is_a_form_error(staff_client):
    incident = make_incident()
    incident_parts_add(incident=incident, actor=SYSTEM, evidence=[EvidenceInput("log", "l", content="same bytes")])
    response = submit(staff_client, change_url(incident), {
        "new_evidence-0-kind": "log", "new_evidence-0-description": "again", "new_evidence-0-pasted_content": "same bytes",
    })
    assert response.status_code == 200
    assert "already has evidence" in inline_errors(response, "new_evidence")[0]["__all__"][0]
    assert incident.evidence.count() == 1


def test_part_services_refuse_bad_edits_and_keep_content_out_of_the_trail(staff_actor):
    incident = make_incident()
    incident_parts_add(
        incident=incident, actor=SYSTEM, accounts=[{"id": "u1"}, {"id": "u2"}],
        indicators=[{"type": "domain", "value": "a.example"}, {"type": "domain", "value": "b.example"}],
        evidence=[EvidenceInput("prompt", "p", content="secret prompt text")],
    )
    first_indicator, first_account, evidence = incident.indicators.first(), incident.accounts.first(), incident.evidence.get()
    with pytest.raises(ValidationError) as duplicate:
        indicator_update(indicator=first_indicator, actor=staff_actor, indicator_type="domain", value="B.Example")
    assert "already has domain:b.example" in str(duplicate.value)
    with pytest.raises(ValidationError, match="not a valid domain"):
        indicator_update(indicator=first_indicator, actor=staff_actor, indicator_type="domain", value="nope")
    with pytest.raises(ValidationError, match="already lists"):
        account_update(account=first_account, actor=staff_actor, identifier="u2", enforcement_action="none")
    with pytest.raises(ValidationError, match="must not be empty"):
        evidence_update(evidence=evidence, actor=staff_actor, kind="prompt", description="  ")
    evidence_remove(evidence=evidence, actor=staff_actor, reason="duplicate upload")
    event = AuditEvent.objects.get(action="evidence_removed")
    assert event.changes["sha256"] == evidence.sha256 and "secret prompt" not in str(event.changes)
    assert (event.incident, event.reason) == (incident, "duplicate upload") and not Evidence.objects.exists()


def test_a_service_refusal_rolls_back_the_whole_save_and_shows_the_form_again(staff_client, monkeypatch):
    incident = make_incident(title="Kept")

    def refuse(**kwargs):
        raise ValidationError({"indicators[0].value": ["refused by the service"]})

    monkeypatch.setattr("incidents.admin.incident.incident_parts_add", refuse)
    response = submit(staff_client, change_url(incident), {
        "title": "Not kept", "indicators-0-type": "domain", "indicators-0-value": "c.example",
    })
    assert response.status_code == 200
    assert "indicators[0].value: refused by the service" in response.context["adminform"].form.non_field_errors()
    incident.refresh_from_db()
    assert incident.title == "Kept" and not incident.indicators.exists()
    assert not AuditEvent.objects.filter(incident=incident, action="updated").exists()


def test_change_page_shows_audit_trail_and_escaped_truncated_evidence(staff_client, staff_actor):
    incident = make_incident()
    payload = "<script>alert(1)</script>" + "A" * 1000
    incident_parts_add(incident=incident, actor=SYSTEM, evidence=[EvidenceInput("prompt", "p", content=payload)])
    incident_transition(incident=incident, actor=staff_actor, to=Status.TRIAGED, reason="looked at it")
    page = staff_client.get(change_url(incident)).content.decode()
    trail = page[page.index('id="audit-trail"'):]
    assert "status_triaged" in trail and "user:stella" in trail and "looked at it" in trail
    assert "status: new → triaged" in trail and "system:tests" in trail
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "A" * 400 not in page  # truncated


def test_incidents_cannot_be_deleted(staff_client):
    incident = make_incident()
    assert staff_client.get(reverse("admin:incidents_incident_delete", args=[incident.pk])).status_code == 403
    response = staff_client.get(reverse(CHANGELIST))
    assert "delete_selected" not in response.content.decode()


# --- Workflow actions -----------------------------------------------------------------------------


def test_triage_confirm_resolve_close_through_actions(staff_client, staff_user):
    one, two = make_incident(), make_incident()
    response = act(staff_client, "triage_incidents", [one, two])
    assert "Triaged 2 incidents." in messages_of(response)
    for action, status in [("confirm_incidents", "confirmed"), ("resolve_incidents", "resolved"),
                           ("close_incidents", "closed")]:
        act(staff_client, action, [one])
        one.refresh_from_db()
        assert one.status == status
    assert one.determination == Determination.CONFIRMED and one.determined_at and one.resolved_at and one.closed_at
    events = AuditEvent.objects.filter(incident=one).exclude(action="created")
    assert [e.action for e in events] == ["status_triaged", "status_confirmed", "status_resolved", "status_closed"]
    assert {e.actor_user for e in events} == {staff_user}


def test_invalid_transition_is_an_error_message_and_the_rest_still_apply(staff_client):
    fresh, confirmed = make_incident(), make_incident()
    incident_transition(incident=confirmed, actor=SYSTEM, to=Status.CONFIRMED)
    response = act(staff_client, "resolve_incidents", [fresh, confirmed])
    assert response.status_code == 200
    shown = messages_of(response)
    assert "Resolved 1 incident." in shown and "1 of 2 not resolved:" in shown
    assert f"{fresh.reference}: cannot move an incident from 'new' to 'resolved' (allowed: confirmed, dismissed, triaged)" in shown
    fresh.refresh_from_db(), confirmed.refresh_from_db()
    assert (fresh.status, confirmed.status) == ("new", "resolved")


def test_dismiss_asks_for_a_reason_on_a_confirmation_page(staff_client, staff_user):
    incident = make_incident()
    page = act(staff_client, "dismiss_incidents", [incident], follow=False)
    assert page.status_code == 200 and "Dismiss incidents" in page.content.decode()
    assert incident.reference in page.content.decode()
    data = {"action": "dismiss_incidents", "_selected_action": [incident.pk], "apply": "yes"}
    blank = staff_client.post(reverse(CHANGELIST), {**data, "reason": "  "})
    assert blank.status_code == 200 and blank.context["form"].errors["reason"]
    incident.refresh_from_db()
    assert incident.status == Status.NEW
    done = staff_client.post(reverse(CHANGELIST), {**data, "reason": "benign red-team test"}, follow=True)
    assert "Dismissed 1 incident." in messages_of(done)
    incident.refresh_from_db()
    assert (incident.status, incident.determination) == (Status.DISMISSED, Determination.FALSE_POSITIVE)
    assert incident.dismissal_reason == "benign red-team test"
    event = AuditEvent.objects.get(incident=incident, action="status_dismissed")
    assert (event.actor_user, event.reason) == (staff_user, "benign red-team test")


def test_change_page_buttons_run_the_action_and_come_back(staff_client):
    incident = make_incident()
    page = staff_client.get(change_url(incident)).content.decode()
    assert 'value="triage_incidents"' in page and 'value="resolve_incidents"' not in page
    response = act(staff_client, "triage_incidents", [incident], follow=False, _from_change=incident.pk)
    assert response.status_code == 302 and response["Location"] == change_url(incident)


def test_reportability_decision_records_who_when_why(staff_client, staff_user):
    incident = make_incident()
    page = act(staff_client, "decide_reportability", [incident], follow=False)
    assert page.status_code == 200 and 'name="decision"' in page.content.decode()
    data = {"action": "decide_reportability", "_selected_action": [incident.pk], "apply": "yes"}
    blank = staff_client.post(reverse(CHANGELIST), {**data, "decision": "reportable", "reason": ""})
    assert blank.status_code == 200 and blank.context["form"].errors["reason"]
    assert Incident.objects.get(pk=incident.pk).reportability == Reportability.PENDING
    response = staff_client.post(reverse(CHANGELIST), {
        "action": "decide_reportability", "_selected_action": [incident.pk], "apply": "yes",
        "decision": "not_reportable", "reason": "internal red-team exercise",
    }, follow=True)
    assert "Recorded the decision for 1 incident." in messages_of(response)
    incident.refresh_from_db()
    assert incident.reportability == Reportability.NOT_REPORTABLE
    assert incident.reportability_decided_by == staff_user
    assert timezone.now() - incident.reportability_decided_at < timedelta(minutes=1)
    assert incident.reportability_reason == "internal red-team exercise"
    event = AuditEvent.objects.get(incident=incident, action="reportability_decided")
    assert event.changes == {"reportability": ["pending", "not_reportable"]} and event.actor_user == staff_user


# --- Lists ----------------------------------------------------------------------------------------


def test_changelist_query_count_is_bounded(staff_client, detector_a, django_assert_max_num_queries):
    detector_actor = Actor.for_detector(detector_a[0])
    for i in range(30):
        make_incident(actor=detector_actor if i % 2 else SYSTEM, title=f"incident {i}")
    with django_assert_max_num_queries(8):  # 6 today: session, user, detector filter, 2 counts, page
        response = staff_client.get(reverse(CHANGELIST))
    assert response.status_code == 200 and response.context["cl"].result_count == 30
    assert "<td class=\"field-detected_by\">classifier-a</td>" in response.content.decode()


def test_lists_never_show_evidence_content_and_search_finds_indicators(staff_client):
    incident = make_incident(title="Phishing")
    make_incident(title="Other")
    secret_prompt = "RAW-PROMPT-CONTENT-do-not-list"
    incident_parts_add(
        incident=incident, actor=SYSTEM, indicators=[{"type": "domain", "value": "phish.example"}],
        evidence=[EvidenceInput(kind="prompt", description="the prompt", content=secret_prompt)],
    )
    for url in (reverse(CHANGELIST), reverse("admin:incidents_evidence_changelist")):
        assert secret_prompt not in staff_client.get(url).content.decode()
    evidence = Evidence.objects.get()
    assert secret_prompt in staff_client.get(reverse("admin:incidents_evidence_change", args=[evidence.pk])).content.decode()
    for term in ("phish.example", incident.reference):
        found = staff_client.get(reverse(CHANGELIST), {"q": term}).context["cl"].result_list
        assert list(found) == [incident], term


def test_index_shows_the_triage_count_linking_to_new_incidents(staff_client):
    make_incident(), make_incident()
    incident_transition(incident=make_incident(), actor=SYSTEM, to=Status.TRIAGED)
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert '<strong id="triage-count">2</strong>' in page
    assert f'href="{reverse(CHANGELIST)}?status__exact=new"' in page
    queue = staff_client.get(reverse(CHANGELIST), {"status__exact": "new"}).context["cl"]
    assert queue.result_count == 2 and {i.status for i in queue.result_list} == {"new"}


def test_audit_events_are_read_only_in_the_admin(staff_client):
    incident = make_incident()
    event = AuditEvent.objects.get(incident=incident)
    assert staff_client.get(reverse("admin:incidents_auditevent_add")).status_code == 403
    assert staff_client.get(reverse("admin:incidents_auditevent_delete", args=[event.pk])).status_code == 403
    change = reverse("admin:incidents_auditevent_change", args=[event.pk])
    assert staff_client.post(change, {"action": "deleted", "reason": "x"}).status_code == 403
    assert staff_client.get(change).status_code == 200
    listing = staff_client.get(reverse("admin:incidents_auditevent_changelist")).content.decode()
    assert "delete_selected" not in listing
    assert AuditEvent.objects.get(pk=event.pk).action == "created"


# --- Detectors and tokens -------------------------------------------------------------------------


def test_creating_a_detector_shows_its_token_once_and_stores_only_the_hash(staff_client, staff_user):
    response = submit(staff_client, reverse("admin:incidents_detector_add"), {
        "name": "abuse-pipeline", "description": "batch classifier", "scopes": ["incidents:submit"],
        "token_label": "prod",
    }, form_id="detector_form")
    assert response.status_code == 200
    token = DetectorToken.objects.get(detector__name="abuse-pipeline")
    secret = response.context["issued"].secret
    assert secret.startswith("mir_") and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert not any(secret in cookie.value for cookie in response.cookies.values())
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest() and secret.startswith(token.prefix)
    assert (token.scopes, token.label) == (["incidents:submit"], "prod")
    for url in (reverse("admin:incidents_detector_change", args=[token.detector_id]),
                reverse("admin:incidents_detectortoken_changelist"),
                reverse("admin:incidents_detectortoken_change", args=[token.pk])):
        page = staff_client.get(url).content.decode()
        assert secret not in page and token.token_hash not in page and token.prefix in page
    assert set(AuditEvent.objects.filter(actor_user=staff_user).values_list("action", flat=True)) == {
        "detector_created", "token_issued",
    }
    assert detector_token_authenticate(secret=secret) == token


def test_issuing_another_token_from_the_detector_page(staff_client, detector_a):
    detector = detector_a[0]
    url = reverse("admin:incidents_detector_change", args=[detector.pk])
    response = submit(staff_client, url, {"issue_token": "on"}, form_id="detector_form")
    assert response.status_code == 200 and detector.tokens.count() == 2
    assert detector_token_authenticate(secret=response.context["issued"].secret).detector == detector
    nothing = submit(staff_client, url, {}, form_id="detector_form", follow=True)
    assert detector.tokens.count() == 2 and "Saved" in messages_of(nothing)[0]


def test_detector_settings_change_through_the_service(staff_client, staff_user, detector_a):
    from tests.conftest import api_client, post, valid_body

    detector, secret = detector_a
    url = reverse("admin:incidents_detector_change", args=[detector.pk])
    submit(staff_client, url, {"is_active": [], "rate_limit_per_minute": "5", "description": "paused"},
           form_id="detector_form", follow=True)
    detector.refresh_from_db()
    assert (detector.is_active, detector.rate_limit_per_minute, detector.description) == (False, 5, "paused")
    event = AuditEvent.objects.get(action="detector_updated")
    assert event.actor_user == staff_user and event.changes["is_active"] == [True, False]
    assert post(api_client(secret), valid_body()).status_code == 401  # a switched-off detector is refused
    page = submit(staff_client, url, {"rate_limit_per_minute": "0"}, form_id="detector_form")
    assert page.status_code == 200 and AuditEvent.objects.filter(action="detector_updated").count() == 1


def test_revoking_tokens_through_the_action(staff_client, staff_user, detector_a):
    detector, secret = detector_a
    token = detector.tokens.get()
    url = reverse("admin:incidents_detectortoken_changelist")
    page = staff_client.post(url, {"action": "revoke_tokens", "_selected_action": [token.pk], "index": 0})
    assert page.status_code == 200 and "Revoke detector tokens" in page.content.decode()
    response = staff_client.post(url, {
        "action": "revoke_tokens", "_selected_action": [token.pk], "apply": "yes", "reason": "leaked in CI log",
    }, follow=True)
    assert "Revoked 1 detector token." in messages_of(response)
    token.refresh_from_db()
    assert token.revoked_at is not None and detector_token_authenticate(secret=secret) is None
    event = AuditEvent.objects.get(action="token_revoked")
    assert (event.actor_user, event.reason) == (staff_user, "leaked in CI log")
    change = reverse("admin:incidents_detectortoken_change", args=[token.pk])
    assert staff_client.post(change, {"label": "edited", "scopes": "[]"}).status_code == 403
    assert staff_client.get(reverse("admin:incidents_detectortoken_add")).status_code == 403
    token.refresh_from_db()
    assert token.label == ""
