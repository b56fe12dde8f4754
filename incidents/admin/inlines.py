"""Inlines of the incident page: evidence, indicators, accounts. IncidentAdmin saves them via services."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html
from django.utils.text import Truncator

from incidents.admin.forms import AccountForm, EvidenceAddForm, EvidenceAddFormSet, EvidenceForm, IndicatorForm
from incidents.models import Account, Evidence, Indicator

# Raw content is sensitive (a prompt may be the harmful instruction itself): a glimpse is enough to
# recognise it; the full text stays in the database, never in lists.
INLINE_PREVIEW_CHARS = 300


def content_preview(evidence: Evidence, limit: int = INLINE_PREVIEW_CHARS) -> str:
    if not evidence.content:
        return "(digest only: content kept elsewhere)" if evidence.pk else "-"
    text = Truncator(evidence.content).chars(limit)
    note = f"{filesizeformat(evidence.size_bytes or len(evidence.content.encode()))} in total"
    # format_html escapes the content: it is untrusted (it may be a prompt-injection or XSS payload).
    return format_html('<pre class="evidence-preview">{}</pre><div class="help">{}</div>', text, note)


class EvidenceInline(admin.StackedInline):
    """Evidence already attached. Content and digest are read-only; removal goes through evidence_remove."""

    model = Evidence
    form = EvidenceForm
    extra = 0
    # Stacked: a 64-character digest and a content excerpt do not fit a table row.
    fields = (("kind", "description"), ("digest", "size"), "content_preview")
    readonly_fields = ("digest", "size", "content_preview")
    verbose_name_plural = "evidence"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False  # new evidence goes through EvidenceAddInline, whose form takes content or a digest

    @admin.display(description="Content (read-only, truncated)")
    def content_preview(self, obj: Evidence) -> str:
        return content_preview(obj)

    @admin.display(description="SHA-256")
    def digest(self, obj: Evidence) -> str:
        return obj.sha256

    @admin.display(description="Size")
    def size(self, obj: Evidence) -> str:
        return filesizeformat(obj.size_bytes) if obj.size_bytes is not None else "unknown (digest only)"


class EvidenceAddInline(admin.StackedInline):
    model = Evidence
    form = EvidenceAddForm
    formset = EvidenceAddFormSet
    extra = 1
    can_delete = False
    fields = (("kind", "description"), ("pasted_content", "given_sha256"))
    verbose_name = "new evidence"
    verbose_name_plural = "add evidence"

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        return super().get_queryset(request).none()  # only blank rows: existing ones are in EvidenceInline


class IndicatorInline(admin.TabularInline):
    model = Indicator
    form = IndicatorForm
    extra = 1
    fields = ("type", "value")


class AccountInline(admin.TabularInline):
    model = Account
    form = AccountForm
    extra = 1
    fields = ("identifier", "enforcement_action")
    verbose_name = "involved account"
