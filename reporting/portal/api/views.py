"""The reviewer API (v1, read-only): the portal's list, detail and downloads for a reviewer's machines.

Every read goes through reporting.portal.selectors (the same scope as the portal: delivered reports of
the reviewer's authority; anything else is a 404) and is logged in the reviewer access log with the
token used. Only GET and HEAD exist; every other method is a 405.
"""
from __future__ import annotations

from uuid import UUID

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from incidents.choices import Category, Severity
from reporting.choices import StageKind
from reporting.portal.api import schema  # noqa: F401  (registers the token's OpenAPI security scheme)
from reporting.portal.api.authentication import CanReadReports, ReviewerRateThrottle, ReviewerTokenAuthentication
from reporting.portal.api.pagination import BadQuery, ReviewerCursorPagination
from reporting.portal.api.serializers import ReportDetail, ReportPage, ReportSummary
from reporting.portal.documents import signature_check, stix_bundle_bytes
from reporting.portal.forms import SEARCH_MAX, ReportFilterForm
from reporting.portal.models import AccessAction, AccessChannel
from reporting.portal.selectors import (
    reviewer_other_stages,
    reviewer_report_detail,
    reviewer_report_download,
    reviewer_report_list,
)
from reporting.portal.services.access import reviewer_access_record
from reporting.portal.signin import client_ip

LIST_PARAMS = frozenset({"delivered_from", "delivered_to", "category", "severity", "stage", "q", "cursor", "limit"})
_PROBLEM = OpenApiResponse(description="Problem details (RFC 9457), application/problem+json")
_PROBLEMS = {code: _PROBLEM for code in (401, 403, 404, 405, 406, 429)}
_TAG = ["reviewer"]


class StixRenderer(JSONRenderer):
    media_type = "application/stix+json"
    format = "stix"


class _ReviewerView(APIView):
    authentication_classes = [ReviewerTokenAuthentication]
    permission_classes = [CanReadReports]
    throttle_classes = [ReviewerRateThrottle]
    # Read-only by construction: Django answers any other method with DRF's 405 problem.
    http_method_names = ["get", "head"]

    def _log(self, action: AccessAction, *, report=None, query: str = "") -> None:  # noqa: ANN001
        principal = self.request.user
        reviewer_access_record(reviewer=principal.reviewer, action=action, ip=client_ip(self.request), report=report,
                               query=query, channel=AccessChannel.API, token=principal.token)


class ReviewerReportListView(_ReviewerView):
    @extend_schema(
        operation_id="reviewer_reports_list", tags=_TAG,
        summary="Reports delivered to your authority, newest first (the portal's list and filters)",
        parameters=[
            OpenApiParameter("delivered_from", OpenApiTypes.DATE, description="delivered on or after (UTC day)"),
            OpenApiParameter("delivered_to", OpenApiTypes.DATE, description="delivered on or before (UTC day)"),
            OpenApiParameter("category", str, enum=list(Category.values)),
            OpenApiParameter("severity", str, enum=list(Severity.values)),
            OpenApiParameter("stage", str, enum=list(StageKind.values), description="stage kind"),
            OpenApiParameter("q", {"type": "string", "minLength": 1, "maxLength": SEARCH_MAX},
                             description="exact reference or words of the title"),
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100},
                             description="page size, 1 to MIR_REVIEWER_API_MAX_PAGE (default 100)"),
            OpenApiParameter("cursor", str, description="from a `next`/`previous` link; opaque"),
        ],
        responses={200: ReportPage, 400: _PROBLEM, **_PROBLEMS},
    )
    def get(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - LIST_PARAMS)
        if unknown:
            raise BadQuery(f"unknown query parameter {unknown[0]!r}",
                           errors=[{"field": name, "message": "unknown parameter"} for name in unknown])
        empty = sorted(name for name, value in request.query_params.items() if value == "")
        if empty:
            # The portal's HTML form sends empty fields for "any"; a machine that sends one has a bug.
            raise BadQuery(f"{empty[0]} is empty: give a value or leave the parameter out",
                           errors=[{"field": name, "message": "empty"} for name in empty])
        repeated = sorted(name for name in request.query_params if len(request.query_params.getlist(name)) > 1)
        if repeated:
            raise BadQuery(f"{repeated[0]} is given more than once",
                           errors=[{"field": name, "message": "given more than once"} for name in repeated])
        form = ReportFilterForm({k: v for k, v in request.query_params.items() if k not in ("cursor", "limit")})
        if not form.is_valid():
            errors = [{"field": field, "message": message} for field, messages in form.errors.items()
                      for message in messages]
            raise BadQuery(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
        paginator = ReviewerCursorPagination()
        reviewer = request.user.reviewer
        page = paginator.paginate_queryset(reviewer_report_list(reviewer=reviewer, filters=form.filters()), request,
                                           view=self)
        self._log(AccessAction.LIST, query=request.query_params.urlencode())
        return paginator.get_paginated_response(ReportSummary(page, many=True).data)


class ReviewerReportDetailView(_ReviewerView):
    @extend_schema(operation_id="reviewer_reports_retrieve", tags=_TAG,
                   summary="One delivered report: metadata, SHA-256, signature check, attempts, receipt",
                   responses={200: ReportDetail, **_PROBLEMS})
    def get(self, request: Request, public_id: UUID) -> Response:
        reviewer = request.user.reviewer
        report = reviewer_report_detail(reviewer=reviewer, public_id=public_id)
        self._log(AccessAction.DETAIL, report=report)
        report.signature_check = signature_check(report)
        report.attempt_list = list(report.attempts.all())
        report.other_stage_list = list(reviewer_other_stages(reviewer=reviewer, report=report))
        return Response(ReportDetail(report).data)


class ReviewerReportDocumentView(_ReviewerView):
    @extend_schema(operation_id="reviewer_reports_document", tags=_TAG,
                   summary="The signed document, byte for byte as sent (hashes to `sha256`)",
                   responses={(200, "application/json"): OpenApiTypes.OBJECT, **_PROBLEMS})
    def get(self, request: Request, public_id: UUID) -> HttpResponse:
        report = reviewer_report_download(reviewer=request.user.reviewer, public_id=public_id)
        self._log(AccessAction.DOWNLOAD_JSON, report=report)
        response = HttpResponse(report.payload.encode("utf-8"), content_type="application/json")
        response["X-Content-SHA256"] = report.payload_sha256
        return response


class ReviewerReportStixView(_ReviewerView):
    renderer_classes = [JSONRenderer, StixRenderer]

    @extend_schema(operation_id="reviewer_reports_stix", tags=_TAG,
                   summary="The report's STIX 2.1 bundle, built from the frozen document",
                   responses={(200, "application/stix+json;version=2.1"): OpenApiTypes.OBJECT, **_PROBLEMS})
    def get(self, request: Request, public_id: UUID) -> HttpResponse:
        report = reviewer_report_download(reviewer=request.user.reviewer, public_id=public_id)
        try:
            body = stix_bundle_bytes(report)
        except ValueError:
            raise Http404("no STIX bundle for this report") from None
        self._log(AccessAction.DOWNLOAD_STIX, report=report)
        return HttpResponse(body, content_type="application/stix+json;version=2.1")
