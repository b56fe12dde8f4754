"""Staff see open questions as a work list and answer them in the admin (through question_answer)."""
from __future__ import annotations

from datetime import UTC, timedelta

from django.urls import reverse
from django.utils import timezone

from incidents.actors import Actor
from incidents.models import AuditEvent
from reporting.choices import ANSWER_STAGE_NAME
from reporting.models import Report
from reporting.portal.models import Question, QuestionStatus
from reporting.portal.services.questions import question_answer, question_ask
from tests.conftest import login_verified
from tests.reporting.portal.conftest import delivered_report


def _ask(world, report, text: str, days: int) -> Question:  # noqa: ANN001
    reviewer = world.reviewer_a.reviewer
    return question_ask(actor=Actor.for_user(reviewer.user), reviewer=reviewer, report=report, text=text,
                        wished_by=timezone.now().astimezone(UTC).date() + timedelta(days=days))


def test_the_work_list_shows_open_questions_soonest_wished_by_first(client, staff_user, world, report_a,
                                                                     staff_actor):
    later = _ask(world, report_a, "Asked first, wished later", 9)
    sooner = _ask(world, report_a, "Asked second, wished sooner", 1)
    done = question_answer(actor=staff_actor, question=_ask(world, report_a, "Already answered", 0), answer="Yes.")
    login_verified(client, staff_user)
    url = reverse("admin:portal_question_changelist")
    response = client.get(url)
    assert response.status_code == 302 and response.url.endswith("?status__exact=open")
    page = client.get(response.url).content.decode()
    assert page.index(sooner.text) < page.index(later.text) and done.text not in page
    assert reverse("admin:reporting_report_change", args=[report_a.pk]) in page
    assert reverse("admin:incidents_incident_change", args=[report_a.incident_id]) in page
    everything = client.get(url, {"status__exact": "answered"}).content.decode()
    assert done.text in everything and later.text not in everything


def test_staff_answer_in_the_admin_and_the_stage_is_opened(client, staff_user, world, report_a):
    question = _ask(world, report_a, "Which provider?", 2)
    login_verified(client, staff_user)
    url = reverse("admin:portal_question_change", args=[question.pk])
    assert b"Your answer" in client.get(url).content
    response = client.post(url, {"answer": "Provider X, since removed."})
    assert response.status_code == 302, response.content[:2000]
    question.refresh_from_db()
    assert question.status == QuestionStatus.ANSWERED and question.answered_by == staff_user
    stage = question.answer_report
    assert stage.stage_name == ANSWER_STAGE_NAME and stage.supersedes_id == report_a.pk
    event = AuditEvent.objects.get(action="question_answered")
    assert event.actor_user == staff_user
    # Answered: the page is read-only, and posting again opens nothing.
    page = client.get(url).content.decode()
    assert "Provider X, since removed." in page and 'name="answer"' not in page
    before = Report.objects.count()
    client.post(url, {"answer": "Changed my mind"})
    question.refresh_from_db()
    assert question.answer == "Provider X, since removed." and Report.objects.count() == before


def test_an_empty_answer_is_a_form_error_and_nothing_is_opened(client, staff_user, world, report_a):
    question = _ask(world, report_a, "Which provider?", 2)
    login_verified(client, staff_user)
    before = Report.objects.count()
    response = client.post(reverse("admin:portal_question_change", args=[question.pk]), {"answer": "   "})
    assert response.status_code == 200 and b"This field is required" in response.content
    question.refresh_from_db()
    assert question.status == QuestionStatus.OPEN and Report.objects.count() == before


def test_a_colleague_answering_first_wins_and_the_late_answer_is_not_sent(client, staff_user, world, report_a,
                                                                         staff_actor):
    question = _ask(world, report_a, "Which provider?", 2)
    login_verified(client, staff_user)
    url = reverse("admin:portal_question_change", args=[question.pk])
    assert b"Your answer" in client.get(url).content
    question_answer(actor=staff_actor, question=question, answer="The colleague's answer.")
    response = client.post(url, {"answer": "Mine."}, follow=True)
    assert b"already been answered; your text was not sent" in response.content
    question.refresh_from_db()
    assert question.answer == "The colleague's answer."
    assert Report.objects.filter(stage_name=ANSWER_STAGE_NAME).count() == 1


def test_a_refusal_by_the_service_comes_back_on_the_form(client, staff_user, world, report_a, monkeypatch):
    question = _ask(world, report_a, "Which provider?", 2)
    login_verified(client, staff_user)
    from django.core.exceptions import ValidationError

    from reporting.portal import admin_qa

    def refuse(**kwargs):  # noqa: ANN003, ANN202
        raise ValidationError({"answer": ["refused for the test"]})

    monkeypatch.setattr(admin_qa, "question_answer", refuse)
    response = client.post(reverse("admin:portal_question_change", args=[question.pk]), {"answer": "Mine."})
    assert response.status_code == 200 and b"refused for the test" in response.content
    question.refresh_from_db()
    assert question.status == QuestionStatus.OPEN and not Report.objects.filter(stage_name=ANSWER_STAGE_NAME).exists()


def test_acknowledgements_are_listed_for_staff_read_only(client, staff_user, client_a, world):
    report = delivered_report("authority-a", title="Acked")
    client_a.post(reverse("portal:report-acknowledge", args=[report.public_id]))
    login_verified(client, staff_user)
    page = client.get(reverse("admin:portal_acknowledgement_changelist")).content.decode()
    assert "reviewer_a" in page and report.incident.reference in page
    assert client.get(reverse("admin:portal_acknowledgement_add")).status_code == 403
