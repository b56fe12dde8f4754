"""Admin pages that only show rows: records written by services (audit, receipts, access logs) or facts
that must not change after the fact. Staff read them here; nothing is added, edited or deleted."""
from __future__ import annotations

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False
