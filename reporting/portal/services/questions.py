"""Questions from an authority about a delivered report, and the lab's answers.

Asking stores the question and e-mails staff after commit. Answering opens a supplemental stage (kind
``update``, stage name ``answer``) for the same destination and incident through
``reporting.services.obligations.report_open_supplemental``; the normal delivery path freezes, signs and
sends it, its document carrying the question and the answer (``reply``, docs/report-format.md).
"""
from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from incidents.actors import Actor
from incidents.models import Incident
from incidents.services.audit import audit_record
from reporting.choices import ANSWER_STAGE_NAME
from reporting.models import Report
from reporting.portal.models import Question, QuestionStatus, Reviewer
from reporting.portal.services.acknowledgements import report_in_reviewer_scope
from reporting.services.obligations import report_open_supplemental

logger = logging.getLogger(__name__)

QUESTION_MAX = 4000
ANSWER_MAX = 20000
# Further out than a year is no deadline anyone plans by; more likely a typo (2207 for 2027).
WISHED_BY_HORIZON_DAYS = 365
# A bound on what one report can accumulate while unanswered: staff answer them one by one.
OPEN_QUESTIONS_PER_REPORT = 20


def _clean_text(name: str, value: str, limit: int) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError({name: ["must not be empty"]})
    if len(value) > limit:
        raise ValidationError({name: [f"at most {limit} characters (this has {len(value)})"]})
    if "\x00" in value:
        raise ValidationError({name: ["must not contain NUL characters"]})
    return value


def wished_by_problem(day: date, *, today: date) -> str | None:
    """Why ``day`` is no usable wished-by date, or None. Days are UTC days."""
    if day < today:
        return f"The date is in the past; choose {today.isoformat()} or later."
    latest = today + timedelta(days=WISHED_BY_HORIZON_DAYS)
    if day > latest:
        return f"Choose a date within {WISHED_BY_HORIZON_DAYS} days (by {latest.isoformat()})."
    return None


def answer_due_at(question: Question) -> datetime:
    """The answer stage is due at the end of the wished-by day (UTC)."""
    return datetime.combine(question.wished_by + timedelta(days=1), time.min, tzinfo=UTC)


def question_ask(*, actor: Actor, reviewer: Reviewer, report: Report, text: str, wished_by: date,
                 now: datetime | None = None) -> Question:
    now = now or timezone.now()
    report_in_reviewer_scope(reviewer=reviewer, report=report)
    text = _clean_text("text", text, QUESTION_MAX)
    if not isinstance(wished_by, date) or isinstance(wished_by, datetime):
        raise ValidationError({"wished_by": ["a date (YYYY-MM-DD)"]})
    problem = wished_by_problem(wished_by, today=now.astimezone(UTC).date())
    if problem:
        raise ValidationError({"wished_by": [problem]})
    with transaction.atomic():
        # Serialise askers on this report so the open-question bound holds.
        Report.objects.select_for_update(of=("self",)).filter(pk=report.pk).values_list("pk", flat=True).first()
        if Question.objects.filter(report=report, status=QuestionStatus.OPEN).count() >= OPEN_QUESTIONS_PER_REPORT:
            raise ValidationError({"text": [f"This report already has {OPEN_QUESTIONS_PER_REPORT} open questions; "
                                            "wait for answers or contact the lab directly."]})
        question = Question.objects.create(report=report, reviewer=reviewer, text=text, wished_by=wished_by,
                                           asked_at=now)
        audit_record(actor=actor, action="question_asked", obj=question,
                     changes={"report": str(report.public_id), "stage": f"{report.stage_name}#{report.sequence}",
                              "authority": reviewer.authority.name, "wished_by": wished_by.isoformat(),
                              "text": text})
        question_id = question.pk
        transaction.on_commit(lambda: _notify_staff(question_id), robust=True)
    return question


def question_answer(*, actor: Actor, question: Question, answer: str, now: datetime | None = None) -> Question:
    """Record the answer and open the stage that delivers it (due at the end of the wished-by day)."""
    if actor.user is None:
        raise ValidationError({"answer": ["a question is answered by a person"]})
    answer = _clean_text("answer", answer, ANSWER_MAX)
    now = now or timezone.now()
    with transaction.atomic():
        # Incident first, then its reports (the lock order everywhere); then the question.
        incident = Incident.objects.select_for_update(of=("self",)).get(reports__pk=question.report_id)
        row = Question.objects.select_for_update(of=("self",)).select_related(
            "report__rule", "report__destination").get(pk=question.pk)
        if row.status != QuestionStatus.OPEN:
            raise ValidationError({"answer": ["this question has already been answered"]})
        stage = report_open_supplemental(incident=incident, rule=row.report.rule, stage_name=ANSWER_STAGE_NAME,
                                         due_at=answer_due_at(row), supersedes=row.report, actor=actor, now=now)
        row.status, row.answer, row.answered_by, row.answered_at = QuestionStatus.ANSWERED, answer, actor.user, now
        row.answer_report = stage
        row.save(update_fields=["status", "answer", "answered_by", "answered_at", "answer_report", "updated_at"])
        audit_record(actor=actor, action="question_answered", obj=row,
                     changes={"report": str(row.report.public_id), "answer_report": str(stage.public_id),
                              "due_at": stage.due_at.isoformat(), "answer": answer})
    return row


def _recipients() -> list[str]:
    if settings.MIR_QUESTION_EMAILS:
        return list(settings.MIR_QUESTION_EMAILS)
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return list(users.values_list("email", flat=True))


def _notify_staff(question_id: int) -> None:
    question = Question.objects.select_related("report__incident", "report__destination",
                                               "reviewer__authority", "reviewer__user").get(pk=question_id)
    report = question.report
    try:
        link = reverse("admin:portal_question_change", args=[question.pk])
    except NoReverseMatch:
        link = ""
    subject = (f"[Question] {report.incident.reference} {report.stage_name}#{report.sequence} from "
               f"{question.reviewer.authority.name}, wished by {question.wished_by.isoformat()}")
    body = (f"{question.reviewer.authority.name} ({question.reviewer.user.get_username()}) asks about "
            f"{report.incident.reference} {report.stage_name}#{report.sequence} sent to {report.destination.name}:\n\n"
            f"{question.text}\n\nWished by: {question.wished_by.isoformat()} (UTC)\n"
            f"Answer it in the admin: {link}\n")
    recipients = _recipients()
    if not recipients:
        logger.warning("question %s: no staff address to tell (set MIR_QUESTION_EMAILS)", question_id)
        return
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except Exception:  # noqa: BLE001  (the question is stored and listed in the admin; mail is a courtesy)
        logger.exception("could not e-mail staff about question %s", question_id)
