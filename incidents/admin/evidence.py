"""Evidence, looked up by digest. View-only: evidence is added, edited and removed on its incident's page."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.text import Truncator

from incidents.admin.inlines import content_preview
from incidents.admin.read_only import ReadOnlyAdminMixin
from incidents.models import Evidence

# Its own page shows more than the inline, still truncated: the admin is not a reader for raw payloads.
PAGE_PREVIEW_CHARS = 2000


@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Never the content in the list: a changelist is seen in passing, shared on screens, screenshotted.
    list_display = ("sha256", "kind", "short_description", "size_bytes", "incident", "created_at")
    list_filter = ("kind", "created_at")
    list_select_related = ("incident",)
    search_fields = ("=sha256", "description")
    search_help_text = "The full SHA-256 digest, or words of the description."
    fields = ("incident", "kind", "description", "sha256", "size_bytes", "content_preview", "public_id", "created_at")
    readonly_fields = fields

    @admin.display(description="Description")
    def short_description(self, obj: Evidence) -> str:
        return Truncator(obj.description).chars(80)

    @admin.display(description="Content (read-only, truncated)")
    def content_preview(self, obj: Evidence) -> str:
        return content_preview(obj, limit=PAGE_PREVIEW_CHARS)

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        # The list never shows content, so it never loads it either.
        return super().get_queryset(request).defer("content")
