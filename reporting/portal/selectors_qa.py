"""Acknowledgements and questions as a reviewer sees them, scoped like every portal read
(reporting.portal.selectors.reviewer_reports: delivered, to the reviewer's authority).

An answer is read from the frozen document of the stage that delivered it, never from the staff's row:
the reviewer sees what was sent (pseudonymised), and only once it was delivered.
"""
from __future__ import annotations

from dataclasses import dataclass

from reporting.models import Report
from reporting.portal.documents import document_of
from reporting.portal.models import Acknowledgement, Question, Reviewer
from reporting.portal.selectors import reviewer_reports


@dataclass(frozen=True)
class QuestionView:
    question: Question
    answer: str | None  # as delivered; None while the answer stage is not delivered
    answer_report: Report | None  # the delivered answer stage


def reviewer_report_acknowledgement(*, reviewer: Reviewer, report: Report) -> Acknowledgement | None:
    return (Acknowledgement.objects.filter(report=report, report__in=reviewer_reports(reviewer=reviewer))
            .select_related("reviewer__user").first())


def reviewer_report_questions(*, reviewer: Reviewer, report: Report) -> list[QuestionView]:
    """The questions the authority asked about this report, oldest first, each with its delivered answer."""
    questions = list(
        Question.objects.filter(report=report, report__in=reviewer_reports(reviewer=reviewer))
        .select_related("reviewer__user").order_by("asked_at", "id")
    )
    answer_ids = [q.answer_report_id for q in questions if q.answer_report_id]
    delivered = {
        r.pk: r for r in reviewer_reports(reviewer=reviewer).filter(pk__in=answer_ids)
        .only("id", "public_id", "payload", "stage_name", "sequence", "delivered_at", "late")
    } if answer_ids else {}
    views = []
    for question in questions:
        stage = delivered.get(question.answer_report_id)
        answer = None
        if stage is not None:
            reply = document_of(stage).get("reply")
            answer = reply.get("answer") if isinstance(reply, dict) else None
        views.append(QuestionView(question=question, answer=answer, answer_report=stage))
    return views


def reviewer_answered_question(*, reviewer: Reviewer, report: Report) -> Question | None:
    """For an answer stage: the question it answers (on a report of the same authority)."""
    return (Question.objects.filter(answer_report=report, report__in=reviewer_reports(reviewer=reviewer))
            .select_related("report").only("id", "public_id", "text", "report__id", "report__public_id",
                                           "report__stage_name", "report__sequence", "report__sent_reference",
                                           "answer_report_id").first())
