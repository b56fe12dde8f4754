"""One error shape for the API: RFC 9457 problem details (application/problem+json).

Every problem has ``type`` (a stable URN documented in docs/api.md), ``title``, ``status`` and
``detail``; validation problems add ``errors``: ``[{"field": "indicators[0].value", "message": ...}]``.
"""
from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)
PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:mir:problem:"


class Problem(exceptions.APIException):
    """An API error with its own problem type."""

    slug = "error"
    title = "Error"

    def __init__(self, detail: str, *, status_code: int | None = None, errors: list | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(detail)
        if status_code is not None:
            self.status_code = status_code
        self.errors = errors
        self.extra_headers = headers or {}


class PayloadTooLarge(Problem):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    slug = "payload-too-large"
    title = "Request body too large"

    def __init__(self, cap: int) -> None:
        super().__init__(f"the request body is larger than the {cap}-byte cap")


class ValidationProblem(Problem):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    slug = "validation-error"
    title = "The request body is not valid"


class IdempotencyKeyMissing(Problem):
    status_code = status.HTTP_400_BAD_REQUEST
    slug = "idempotency-key-missing"
    title = "Idempotency-Key header required"


class IdempotencyKeyMismatch(Problem):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class IdempotencyKeyInFlight(Problem):
    status_code = status.HTTP_409_CONFLICT
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still being processed"


_DRF_SLUGS = {
    exceptions.ParseError: ("malformed-request", "Malformed request"),
    exceptions.NotAuthenticated: ("not-authenticated", "Authentication required"),
    exceptions.AuthenticationFailed: ("invalid-token", "Invalid or expired token"),
    exceptions.PermissionDenied: ("forbidden", "Missing scope"),
    exceptions.NotFound: ("not-found", "Not found"),
    exceptions.MethodNotAllowed: ("method-not-allowed", "Method not allowed"),
    exceptions.NotAcceptable: ("not-acceptable", "Not acceptable"),
    exceptions.UnsupportedMediaType: ("unsupported-media-type", "Unsupported media type"),
    exceptions.Throttled: ("rate-limited", "Too many requests"),
    exceptions.ValidationError: ("validation-error", "The request body is not valid"),
}


def flatten_errors(detail: object, prefix: str = "") -> list[dict]:
    """Turn DRF's or Django's nested error structure into [{"field": "a.b[0].c", "message": ...}]."""
    out: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # ListField errors are keyed by item index
                path = f"{prefix}[{key}]"
            else:
                name = key if key not in ("non_field_errors", "__all__") else ""
                path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            out += flatten_errors(value, path)
    elif isinstance(detail, list):
        if detail and all(isinstance(item, (dict, list)) for item in detail):
            for index, item in enumerate(detail):
                out += flatten_errors(item, f"{prefix}[{index}]")
        else:
            for item in detail:
                out += flatten_errors(item, prefix)
    else:
        out.append({"field": prefix or None, "message": str(detail)})
    return [e for e in out if e["message"]]


def problem_body(*, slug: str, title: str, status_code: int, detail: str, errors: list | None = None) -> dict:
    body = {"type": TYPE_PREFIX + slug, "title": title, "status": status_code, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def validation_problem_from_django(exc: DjangoValidationError) -> ValidationProblem:
    detail = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
    errors = flatten_errors(detail)
    return ValidationProblem(_summary(errors), errors=errors)


def _summary(errors: list[dict]) -> str:
    first = errors[0] if errors else {"field": None, "message": "invalid"}
    where = f"{first['field']}: " if first["field"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}{first['message']}{more}"


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = validation_problem_from_django(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handling and logging take over
    if isinstance(exc, Problem):
        body = problem_body(slug=exc.slug, title=exc.title, status_code=exc.status_code, detail=str(exc.detail),
                            errors=exc.errors)
        for name, value in exc.extra_headers.items():
            response[name] = value
    else:
        slug, title = next(
            (pair for cls, pair in _DRF_SLUGS.items() if isinstance(exc, cls)), ("error", "Error")
        )
        if isinstance(exc, exceptions.ValidationError):
            errors = flatten_errors(exc.detail)
            body = problem_body(slug=slug, title=title, status_code=422, detail=_summary(errors), errors=errors)
            response.status_code = 422
        else:
            body = problem_body(slug=slug, title=title, status_code=response.status_code, detail=str(exc.detail))
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_404_for_api(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Unknown URLs under /api/ answer in the API's error shape; elsewhere Django's own page."""
    if request.path.startswith("/api/"):
        body = problem_body(slug="not-found", title="Not found", status_code=404, detail="no such resource")
        return JsonResponse(body, status=404, content_type=PROBLEM_CONTENT_TYPE)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
