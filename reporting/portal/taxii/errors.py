"""TAXII 2.1 error messages (section 3.6.1) instead of the API's problem JSON, for every failure of a
TAXII endpoint: authentication, scope, not found, method, media type, bad query, rate limit."""
from __future__ import annotations

import logging

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"

_TITLES = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 406: "Not acceptable", 415: "Unsupported media type",
           429: "Too many requests"}


class TaxiiError(exceptions.APIException):
    def __init__(self, status_code: int, title: str, description: str) -> None:
        super().__init__(description)
        self.status_code = status_code
        self.title = title


def taxii_error_body(status_code: int, title: str, description: str) -> dict:
    # http_status is a string in TAXII 2.1's error message.
    return {"title": title, "description": description, "http_status": str(status_code)}


def taxii_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("no such TAXII resource, or not one this token can read")
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handling and logging take over
    title = exc.title if isinstance(exc, TaxiiError) else _TITLES.get(response.status_code, "Error")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    response.data = taxii_error_body(response.status_code, title, str(detail))
    response.content_type = TAXII_MEDIA_TYPE
    return response
