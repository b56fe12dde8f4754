"""Questions from reviewers: asked on the detail page, listed for staff and e-mailed, answered in the admin,
and delivered as a supplemental 'answer' stage through the normal outbox."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from jsonschema import Draft202012Validator

from incidents.actors import Actor
from incidents.choices import EnforcementAction
from incidents.models import AuditEvent
from incidents.services.intake import incident_create
from reporting.choices import ANSWER_STAGE_NAME, ReportStatus, StageKind
from reporting.models import Report
from reporting.packaging.pseudonyms import pseudonymize
from reporting.portal.models import Question, QuestionStatus
from reporting.portal.selectors_qa import reviewer_report_questions
from reporting.portal.services.questions import (
    OPEN_QUESTIONS_PER_REPORT,
    QUESTION_MAX,
    WISHED_BY_HORIZON_DAYS,
    question_answer,
    question_ask,
)
from tests.conftest import SYSTEM, incident_fields, login_verified
from tests.reporting.portal.conftest import deliver, pending_report_a
from tests.reporting.test_packaging import SCHEMA

VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _today():
    return timezone.now().astimezone(UTC).date()


def _ask_url(report) -> str:  # noqa: ANN001
    return reverse("portal:report-ask", args=[report.public_id])


def _detail(report) -> str:  # noqa: ANN001
    return reverse("portal:report-detail", args=[report.public_id])


def _ask(client, report, text="Which hosting provider served the toolkit?", wished_by=None):  # noqa: ANN001, ANN201
    wished_by = wished_by if wished_by is not None else (_today() + timedelta(days=3)).isoformat()
    return client.post(_ask_url(report), {"text": text, "wished_by": wished_by})


def test_a_question_is_stored_audited_and_staff_are_emailed_after_commit(
        client_a, report_a, world, settings, django_capture_on_commit_callbacks):
    settings.MIR_QUESTION_EMAILS = ["tns@lab.example", "compliance@lab.example"]
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask(client_a, report_a)
    assert response.status_code == 302 and response.url.startswith(_detail(report_a))
    question = Question.objects.get()
    assert question.report == report_a and question.reviewer == world.reviewer_a.reviewer
    assert question.status == QuestionStatus.OPEN and question.wished_by == _today() + timedelta(days=3)
    [event] = AuditEvent.objects.filter(action="question_asked")
    assert event.actor_user == world.reviewer_a.reviewer.user and event.incident_id == report_a.incident_id
    [message] = mail.outbox
    assert message.to == ["tns@lab.example", "compliance@lab.example"]
    assert "Authority A" in message.subject and report_a.incident.reference in message.subject
    assert "Which hosting provider" in message.body and f"/admin/portal/question/{question.pk}/change/" in message.body
    page = client_a.get(response.url).content.decode()
    assert "Your question was sent to the lab" in page and "Which hosting provider" in page
    assert "Waiting for the lab's answer" in page


def test_without_a_setting_every_active_staff_member_with_an_address_is_emailed(
        client_a, report_a, staff_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _ask(client_a, report_a)
    assert [m.to for m in mail.outbox] == [[staff_user.email]]


def test_mail_trouble_does_not_lose_the_question(client_a, report_a, staff_user, settings,
                                                 django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "tests.reporting.portal.test_questions.BrokenBackend"
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask(client_a, report_a)
    assert response.status_code == 302 and Question.objects.count() == 1


class BrokenBackend:
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        pass

    def send_messages(self, messages) -> int:  # noqa: ANN001
        raise ConnectionRefusedError("smtp is down")


@pytest.mark.parametrize(("text", "wished_by", "message"), [
    ("", "+3", "Write your question."),
    ("   \n  ", "+3", "Write your question."),
    ("x" * (QUESTION_MAX + 1), "+3", f"Keep the question to {QUESTION_MAX} characters."),
    ("nul \x00 inside", "+3", "Null characters are not allowed."),
    ("A fine question", "", "Give the date you would like the answer by."),
    ("A fine question", "27/11/2026", "Use a date as YYYY-MM-DD."),
    ("A fine question", "2026-02-30", "Use a date as YYYY-MM-DD."),
    ("A fine question", "-1", "The date is in the past"),
    ("A fine question", f"+{WISHED_BY_HORIZON_DAYS + 1}", f"Choose a date within {WISHED_BY_HORIZON_DAYS} days"),
    ("A fine question", "9999-12-31", f"Choose a date within {WISHED_BY_HORIZON_DAYS} days"),
    ("A fine question", "0001-01-01", "The date is in the past"),
    ("A fine question", "2026-11-27T10:00:00Z", "Use a date as YYYY-MM-DD."),
])
def test_bad_input_is_a_clear_form_error_and_nothing_is_stored(client_a, report_a, staff_user, text, wished_by,
                                                               message, django_capture_on_commit_callbacks):
    if wished_by.startswith(("+", "-")) and wished_by[1:].isdigit():
        wished_by = (_today() + timedelta(days=int(wished_by))).isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask(client_a, report_a, text=text, wished_by=wished_by)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Your question was not sent" in page and message.replace("'", "&#x27;") in page
    assert 'class="field has-error"' in page
    assert not Question.objects.exists() and not mail.outbox
    assert not AuditEvent.objects.filter(action="question_asked").exists()


def test_today_and_the_horizon_itself_are_accepted(client_a, report_a):
    assert _ask(client_a, report_a, wished_by=_today().isoformat()).status_code == 302
    horizon = (_today() + timedelta(days=WISHED_BY_HORIZON_DAYS)).isoformat()
    assert _ask(client_a, report_a, wished_by=horizon).status_code == 302
    assert Question.objects.count() == 2


def test_another_authority_cannot_ask_about_a_report_and_nothing_is_stored(client_b, report_a):
    assert _ask(client_b, report_a).status_code == 404
    assert not Question.objects.exists()


def test_a_get_on_the_form_address_leads_to_the_page_and_stores_nothing(client_a, client_b, report_a):
    response = client_a.get(_ask_url(report_a), {"text": "q", "wished_by": _today().isoformat()})
    assert response.status_code == 302 and response.url == f"{_detail(report_a)}#questions-heading"
    assert client_b.get(_ask_url(report_a), follow=True).status_code == 404
    assert not Question.objects.exists()


def test_an_undelivered_report_cannot_be_asked_about(client_a, world):
    assert _ask(client_a, pending_report_a(world)).status_code == 404
    assert not Question.objects.exists()


def test_open_questions_per_report_are_bounded(client_a, report_a, world):
    reviewer = world.reviewer_a.reviewer
    for n in range(OPEN_QUESTIONS_PER_REPORT):
        question_ask(actor=Actor.for_user(reviewer.user), reviewer=reviewer, report=report_a, text=f"q{n}",
                     wished_by=_today())
    response = _ask(client_a, report_a)
    assert response.status_code == 400 and b"already has 20 open questions" in response.content
    assert Question.objects.count() == OPEN_QUESTIONS_PER_REPORT


def test_the_service_refuses_what_the_form_would(world, report_a, report_b):
    reviewer = world.reviewer_a.reviewer
    actor = Actor.for_user(reviewer.user)
    cases = [
        {"report": report_b, "text": "q", "wished_by": _today()},
        {"report": report_a, "text": " ", "wished_by": _today()},
        {"report": report_a, "text": "q", "wished_by": _today() - timedelta(days=1)},
        {"report": report_a, "text": "q", "wished_by": datetime.now(tz=UTC)},
    ]
    for case in cases:
        with pytest.raises(ValidationError):
            question_ask(actor=actor, reviewer=reviewer, **case)
    assert not Question.objects.exists()


# --- answering ----------------------------------------------------------------------------------

def _question(world, report, text="What did the actor do next?", days=2) -> Question:  # noqa: ANN001
    reviewer = world.reviewer_a.reviewer
    return question_ask(actor=Actor.for_user(reviewer.user), reviewer=reviewer, report=report, text=text,
                        wished_by=_today() + timedelta(days=days))


def test_an_answer_opens_a_supplemental_stage_for_the_same_destination_due_by_the_wished_by_day(
        world, report_a, staff_actor):
    question = _question(world, report_a)
    answered = question_answer(actor=staff_actor, question=question, answer="They moved to a second provider.")
    stage = answered.answer_report
    assert answered.status == QuestionStatus.ANSWERED and answered.answered_by == staff_actor.user
    assert (stage.incident_id, stage.destination_id, stage.rule_id) == (
        report_a.incident_id, report_a.destination_id, report_a.rule_id)
    assert stage.stage_name == ANSWER_STAGE_NAME and stage.stage_kind == StageKind.UPDATE and stage.sequence == 1
    assert stage.supersedes_id == report_a.pk and stage.status == ReportStatus.PENDING
    assert stage.due_at == datetime.combine(question.wished_by + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert stage.next_attempt_at is not None and stage.next_attempt_at <= timezone.now()
    actions = list(AuditEvent.objects.filter(incident=report_a.incident, action__in=[
        "report_opened", "question_answered"]).order_by("id").values_list("action", "actor_user"))
    assert actions[-2:] == [("report_opened", staff_actor.user.pk), ("question_answered", staff_actor.user.pk)]
    second = question_answer(actor=staff_actor, question=_question(world, report_a, "And then?"), answer="Nothing.")
    assert second.answer_report.sequence == 2


def test_the_answer_is_delivered_signed_with_the_question_and_shown_with_it(client_a, world, staff_actor):
    incident = incident_create(actor=SYSTEM, fields=incident_fields(severity="SEV-1", title="Toolkit"), accounts=[
        {"id": "mallory@attacker.example", "enforcement_action": EnforcementAction.BANNED}]).incident
    report = deliver(Report.objects.get(incident=incident, stage_name="early_notice", destination__name="authority-a"))
    question = _question(world, report, text="Which accounts were banned?")
    question = question_answer(actor=staff_actor, question=question,
                               answer="The account mallory@attacker.example was banned on the day.")
    page = client_a.get(_detail(report)).content.decode()
    assert "the answer is being delivered" in page and "was banned on the day" not in page

    stage = deliver(question.answer_report)
    document = json.loads(stage.payload)["document"]
    assert VALIDATOR.is_valid(document), list(VALIDATOR.iter_errors(document))[:3]
    assert document["identity"]["supersedes"] == str(report.public_id)
    assert document["identity"]["stage"] == "answer" and document["identity"]["stage_kind"] == "update"
    reply = document["reply"]
    assert reply["in_reply_to"] == str(report.public_id) and reply["question_id"] == str(question.public_id)
    assert reply["question"] == "Which accounts were banned?" and reply["wished_by"] == question.wished_by.isoformat()
    # The answer leaves like every other text: account identifiers as this destination's pseudonyms.
    pseudonym = pseudonymize("mallory@attacker.example", stage.destination.get_pseudonym_key())
    assert "mallory@attacker.example" not in stage.payload and pseudonym in reply["answer"]

    page = client_a.get(_detail(report)).content.decode()
    assert "Which accounts were banned?" in page and pseudonym in page and "mallory@attacker.example" not in page
    assert reverse("portal:report-detail", args=[stage.public_id]) in page
    answer_page = client_a.get(_detail(stage)).content.decode()
    assert "This stage answers a question about" in answer_page and "Signature: valid" in answer_page
    assert "Which accounts were banned?" in answer_page  # the document's reply section


def test_answers_are_scoped_like_the_report(world, report_a, staff_actor):
    question = question_answer(actor=staff_actor, question=_question(world, report_a), answer="Here.")
    deliver(question.answer_report)
    assert len(reviewer_report_questions(reviewer=world.reviewer_a.reviewer, report=report_a)) == 1
    assert reviewer_report_questions(reviewer=world.reviewer_b.reviewer, report=report_a) == []


@pytest.mark.parametrize("answer", ["", "   ", "\x00", "x" * 20001])
def test_a_bad_answer_is_refused_and_nothing_is_opened(world, report_a, staff_actor, answer):
    question = _question(world, report_a)
    before = Report.objects.count()
    with pytest.raises(ValidationError):
        question_answer(actor=staff_actor, question=question, answer=answer)
    question.refresh_from_db()
    assert question.status == QuestionStatus.OPEN and Report.objects.count() == before


def test_a_question_is_answered_once_and_by_a_person(world, report_a, staff_actor):
    question = _question(world, report_a)
    with pytest.raises(ValidationError):
        question_answer(actor=Actor.system("bot"), question=question, answer="auto")
    question_answer(actor=staff_actor, question=question, answer="First.")
    before = Report.objects.count()
    with pytest.raises(ValidationError, match="already been answered"):
        question_answer(actor=staff_actor, question=question, answer="Second.")
    assert Report.objects.count() == before


def test_a_rule_cannot_take_the_answer_stage_name():
    from reporting.services.rules import _stage

    with pytest.raises(ValidationError, match="reserved"):
        _stage("rules[0].stages[0]", {"name": "answer", "kind": "update", "clock_start": "detected_at",
                                      "offset": "1d"}, 0)


def test_the_stix_bundle_of_an_answer_carries_question_and_answer(world, report_a, staff_actor):
    from reporting.portal.documents import stix_bundle_bytes

    question = question_answer(actor=staff_actor, question=_question(world, report_a, "Which provider?"),
                               answer="Provider X.")
    stage = deliver(question.answer_report)
    bundle = json.loads(stix_bundle_bytes(stage))  # validated as strict STIX 2.1 on the way
    [note] = [obj for obj in bundle["objects"] if obj["type"] == "note"]
    assert "Which provider?" in note["content"] and "Answer: Provider X." in note["content"]
    assert str(report_a.public_id) in note["content"]


def _detail_queries(client, report) -> int:  # noqa: ANN001
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get(_detail(report)).status_code == 200
    return len(queries)


def test_the_detail_page_reads_questions_and_answers_without_a_query_per_question(client_a, world, report_a,
                                                                                   staff_actor):
    def answered(text: str) -> None:
        deliver(question_answer(actor=staff_actor, question=_question(world, report_a, text), answer="A.").answer_report)

    answered("first")
    one = _detail_queries(client_a, report_a)
    for n in range(4):
        answered(f"more {n}")
    _question(world, report_a, "still open")
    assert _detail_queries(client_a, report_a) == one


def test_staff_can_open_the_answer_stage_on_the_clock_board(client, staff_user, world, report_a, staff_actor):
    stage = question_answer(actor=staff_actor, question=_question(world, report_a), answer="Here.").answer_report
    login_verified(client, staff_user)
    assert client.get(reverse("admin:reporting_report_change", args=[stage.pk])).status_code == 200
    assert client.get(reverse("admin:reporting_report_changelist")).status_code == 200
    deliver(stage)
    assert client.get(reverse("admin:reporting_report_change", args=[stage.pk])).status_code == 200


def test_field_errors_are_tied_to_their_inputs_for_screen_readers(client_a, report_a):
    page = _ask(client_a, report_a, text="", wished_by="nonsense").content.decode()
    for name in ("text", "wished_by"):
        assert f'id="id_{name}_error"' in page and f'id="id_{name}_helptext"' in page
        assert f'aria-describedby="id_{name}_helptext id_{name}_error"' in page
    assert page.count('aria-invalid="true"') == 2
