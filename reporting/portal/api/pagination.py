"""Cursor pagination of the reviewer API: stable under new deliveries, opaque, strict about bad input."""
from __future__ import annotations

from django.conf import settings
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from incidents.api.problems import Problem


class BadQuery(Problem):
    status_code = 400
    slug = "bad-query"
    title = "The query string is not valid"


class ReviewerCursorPagination(CursorPagination):
    # The portal's order: newest delivery first; id breaks ties between reports delivered in one instant.
    ordering = ("-delivered_at", "-id")
    page_size_query_param = "limit"
    cursor_query_param = "cursor"

    def __init__(self) -> None:
        self.page_size = settings.MIR_PORTAL_PAGE_SIZE
        self.max_page_size = settings.MIR_REVIEWER_API_MAX_PAGE

    def get_page_size(self, request) -> int:  # noqa: ANN001
        # DRF quietly falls back to the default on a bad limit; a client asking for 0 or "ten" should hear so.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return settings.MIR_PORTAL_PAGE_SIZE
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise BadQuery(f"limit must be a whole number from 1 to {self.max_page_size}",
                           errors=[{"field": "limit", "message": f"1 to {self.max_page_size}"}])
        return int(raw)

    def decode_cursor(self, request):  # noqa: ANN001, ANN201
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = False
        # DRF checks the cursor's shape but not its position, which goes into the query as a time.
        if cursor is False or (cursor is not None and cursor.position is not None
                               and not _is_time(cursor.position)):
            raise BadQuery("cursor is not one this API gave out; follow the `next` link as given",
                           errors=[{"field": "cursor", "message": "invalid cursor"}])
        return cursor


def _is_time(text: str) -> bool:
    try:
        value = parse_datetime(text)
    except ValueError:
        return False
    return value is not None and value.tzinfo is not None and 1970 <= value.year <= 9000
