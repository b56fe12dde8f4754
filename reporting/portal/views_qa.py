"""The reviewer's two writes on a delivered report: acknowledge it, ask a question about it.

Plain POST forms (CSRF, no JavaScript needed) that redirect back to the report (post/redirect/get). The
report is found through the reviewer's scope first, so another authority's report answers 404 and
nothing is stored.
"""
from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from incidents.actors import Actor
from reporting.models import Report
from reporting.portal.forms_qa import QuestionForm
from reporting.portal.models import Reviewer
from reporting.portal.selectors import reviewer_report_download
from reporting.portal.selectors_qa import (
    reviewer_answered_question,
    reviewer_report_acknowledgement,
    reviewer_report_questions,
)
from reporting.portal.services.acknowledgements import report_acknowledge
from reporting.portal.services.questions import question_ask
from reporting.portal.views_auth import reviewer_required


def qa_context(*, reviewer: Reviewer, report: Report, question_form: QuestionForm | None = None) -> dict:
    """What the detail page shows about acknowledgement and questions (reporting/portal/views.py)."""
    return {
        "acknowledgement": reviewer_report_acknowledgement(reviewer=reviewer, report=report),
        "questions": reviewer_report_questions(reviewer=reviewer, report=report),
        "question_form": question_form or QuestionForm(),
        "answers_question": reviewer_answered_question(reviewer=reviewer, report=report),
    }


def _back(report: Report, anchor: str) -> HttpResponse:
    return redirect(f"{reverse('portal:report-detail', args=[report.public_id])}#{anchor}")


def _to_detail(public_id: UUID, anchor: str) -> HttpResponse:
    """A GET here is a reviewer who signed in again after their session ran out mid-form: back to the page
    (which applies the scope itself). Nothing is written on a GET."""
    return redirect(f"{reverse('portal:report-detail', args=[public_id])}#{anchor}")


@reviewer_required
@require_http_methods(["GET", "POST"])
def report_acknowledge_view(request: HttpRequest, public_id: UUID) -> HttpResponse:
    if request.method == "GET":
        return _to_detail(public_id, "acknowledgement-heading")
    reviewer = request.reviewer
    report = reviewer_report_download(reviewer=reviewer, public_id=public_id)
    result = report_acknowledge(actor=Actor.for_user(reviewer.user), reviewer=reviewer, report=report)
    if result.created:
        messages.success(request, f"You acknowledged this report for {reviewer.authority.name}.")
    else:
        messages.info(request, "This report was already acknowledged; nothing changed.")
    return _back(report, "acknowledgement-heading")


@reviewer_required
@require_http_methods(["GET", "POST"])
def report_ask_view(request: HttpRequest, public_id: UUID) -> HttpResponse:
    if request.method == "GET":
        return _to_detail(public_id, "questions-heading")
    reviewer = request.reviewer
    report = reviewer_report_download(reviewer=reviewer, public_id=public_id)
    form = QuestionForm(request.POST)
    if form.is_valid():
        try:
            question_ask(actor=Actor.for_user(reviewer.user), reviewer=reviewer, report=report,
                         text=form.cleaned_data["text"], wished_by=form.cleaned_data["wished_by"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, "Your question was sent to the lab. The answer will arrive as a "
                                      "supplemental report and appear here with your question.")
            return _back(report, "questions-heading")
    # The page again, with the form's errors and what was typed; nothing was stored.
    from reporting.portal.views import report_detail

    response = report_detail(request, public_id=public_id, question_form=form)
    response.status_code = 400
    return response
