"""The reviewer's pages: the list, one report, and its two downloads. Every read goes through
reporting.portal.selectors (the scope) and is logged in the same request."""
from __future__ import annotations

import json
from uuid import UUID

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from reporting.portal.documents import document_of, document_sections, signature_check, stix_bundle_bytes
from reporting.portal.forms import ReportFilterForm
from reporting.portal.forms_qa import QuestionForm
from reporting.portal.models import AccessAction
from reporting.portal.pagination import COUNT_CEILING, CappedPaginator
from reporting.portal.selectors import (
    ReportFilters,
    reviewer_other_stages,
    reviewer_report_detail,
    reviewer_report_download,
    reviewer_report_list,
)
from reporting.portal.services.access import reviewer_access_record
from reporting.portal.signin import client_ip
from reporting.portal.views_auth import reviewer_required
from reporting.portal.views_qa import qa_context


@reviewer_required
def report_list(request: HttpRequest) -> HttpResponse:
    reviewer = request.reviewer
    form = ReportFilterForm(request.GET or None)
    context = {"reviewer": reviewer, "form": form, "page": None}
    if request.GET and not form.is_valid():
        # Nothing is listed for a query we cannot read: a clear message beats a silently wider list.
        return render(request, "portal/report_list.html", context, status=400)
    filters = form.filters() if request.GET else ReportFilters()
    paginator = CappedPaginator(reviewer_report_list(reviewer=reviewer, filters=filters), settings.MIR_PORTAL_PAGE_SIZE)
    number = (form.cleaned_data.get("page") if request.GET else None) or 1
    if number > max(paginator.num_pages, 1):
        context["page_error"] = f"There is no page {number}; the last page is {max(paginator.num_pages, 1)}."
        if paginator.capped:
            context["page_error"] += " Narrow the filters (e.g. the delivery dates) to reach older reports."
        return render(request, "portal/report_list.html", context, status=400)
    page = paginator.page(number)
    query = request.GET.copy()
    query.pop("page", None)
    reviewer_access_record(reviewer=reviewer, action=AccessAction.LIST, ip=client_ip(request),
                           query=request.GET.urlencode())
    context.update({"page": page, "reports": page.object_list, "query": query.urlencode(),
                    "total": min(paginator.count, COUNT_CEILING), "capped": paginator.capped})
    return render(request, "portal/report_list.html", context)


@reviewer_required
def report_detail(request: HttpRequest, public_id: UUID, question_form: QuestionForm | None = None) -> HttpResponse:
    reviewer = request.reviewer
    report = reviewer_report_detail(reviewer=reviewer, public_id=public_id)
    reviewer_access_record(reviewer=reviewer, action=AccessAction.DETAIL, ip=client_ip(request), report=report)
    document = document_of(report)
    context = {
        "reviewer": reviewer, "report": report, "sections": document_sections(document),
        "signature": signature_check(report),
        "receipt_json": json.dumps(report.receipt, indent=2, sort_keys=True, ensure_ascii=False),
        "attempts": list(report.attempts.all()), "others": list(reviewer_other_stages(reviewer=reviewer,
                                                                                       report=report)),
        **qa_context(reviewer=reviewer, report=report, question_form=question_form),
    }
    return render(request, "portal/report_detail.html", context)


def _filename(report, suffix: str) -> str:  # noqa: ANN001
    reference = "".join(ch for ch in report.sent_reference if ch.isalnum() or ch in "-_") or "report"
    return f"{reference}-{report.stage_name}-{report.sequence}-{report.public_id}{suffix}"


@reviewer_required
def report_document(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The payload exactly as sent: these bytes hash to the SHA-256 shown on the page."""
    reviewer = request.reviewer
    report = reviewer_report_download(reviewer=reviewer, public_id=public_id)
    reviewer_access_record(reviewer=reviewer, action=AccessAction.DOWNLOAD_JSON, ip=client_ip(request),
                           report=report)
    response = HttpResponse(report.payload.encode("utf-8"), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{_filename(report, ".json")}"'
    response["X-Content-SHA256"] = report.payload_sha256
    return response


@reviewer_required
def report_stix(request: HttpRequest, public_id: UUID) -> HttpResponse:
    reviewer = request.reviewer
    report = reviewer_report_download(reviewer=reviewer, public_id=public_id)
    try:
        body = stix_bundle_bytes(report)
    except ValueError:
        # A document the mapping cannot read has no bundle; the JSON download still has everything.
        raise Http404("no STIX bundle for this report") from None
    reviewer_access_record(reviewer=reviewer, action=AccessAction.DOWNLOAD_STIX, ip=client_ip(request),
                           report=report)
    response = HttpResponse(body, content_type="application/stix+json;version=2.1")
    response["Content-Disposition"] = f'attachment; filename="{_filename(report, ".stix.json")}"'
    return response
