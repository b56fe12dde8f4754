"""The clock board: every report stage owed to an authority, open ones first, soonest deadline first.

Reports are the outbox; nothing here edits one. A report page is read-only and its buttons post the
board's actions (report_actions.py), which call reporting.services.reports.
"""
from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from incidents.admin.read_only import ReadOnlyAdminMixin
from reporting.admin.clock import highest_escalation, is_overdue, time_left_html
from reporting.admin.report_actions import REPORT_ACTIONS, report_buttons, report_label
from reporting.admin.report_document import digest_incidents_html, document_view
from reporting.choices import OPEN_REPORT_STATUSES, ReportStatus
from reporting.models import DeliveryAttempt, Escalation, Report
from reporting.selectors import BOARD_ORDERING, receipt_of, reports_board

SHOW_ALL = "all"
OPEN = "open"
_OPEN_Q = Q(status__in=OPEN_REPORT_STATUSES)


class BoardStatusFilter(admin.SimpleListFilter):
    """Open stages by default (the board's point); any single status, or everything, on request."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(SHOW_ALL, "All, including delivered and withdrawn"), *ReportStatus.choices]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN001, ANN201
        value = self.value()
        if value is None or value == OPEN:
            return queryset.filter(_OPEN_Q)
        if value == SHOW_ALL:
            return queryset
        return queryset.filter(status=value)

    def choices(self, changelist):  # noqa: ANN001, ANN201
        yield {
            "selected": self.value() in (None, OPEN),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Open (awaiting approval, pending, failed)",
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN001, ANN201
        overdue = _OPEN_Q & Q(due_at__lt=timezone.now())
        if self.value() == "yes":
            return queryset.filter(overdue)
        if self.value() == "no":
            return queryset.exclude(overdue)
        return queryset


class DueWithinFilter(admin.SimpleListFilter):
    title = "due within"
    parameter_name = "due_within"
    _HOURS = {"24h": 24, "72h": 72, "7d": 7 * 24}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("24h", "Next 24 hours"), ("72h", "Next 72 hours"), ("7d", "Next 7 days")]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN001, ANN201
        hours = self._HOURS.get(self.value() or "")
        if hours is None:
            return queryset
        now = timezone.now()
        return queryset.filter(due_at__gte=now, due_at__lt=now + timedelta(hours=hours))


class UnowedFilter(admin.SimpleListFilter):
    """Open stages an edit of their rule no longer owes: a person sends or withdraws each one."""

    title = "owed by its rule"
    parameter_name = "unowed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "No longer owed (rule edited)")]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN001, ANN201
        if self.value() == "yes":
            return queryset.filter(_OPEN_Q, unowed_since__isnull=False)
        return queryset


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False


class DeliveryAttemptInline(_ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("number", "started", "duration", "outcome", "http_status", "error_class", "excerpt", "via_fallback",
              "address")
    readonly_fields = fields
    verbose_name_plural = "delivery attempts"

    @admin.display(description="Started (UTC)")
    def started(self, obj: DeliveryAttempt) -> str:
        return f"{obj.started_at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="Duration")
    def duration(self, obj: DeliveryAttempt) -> str:
        return f"{obj.duration_ms} ms"

    @admin.display(description="Response excerpt")
    def excerpt(self, obj: DeliveryAttempt) -> str:
        if not obj.response_excerpt:
            return "—"
        return format_html('<pre class="attempt-excerpt">{}</pre>', obj.response_excerpt)


class EscalationInline(_ReadOnlyInline):
    model = Escalation
    fields = ("level", "message", "created_at", "notified_at", "acknowledged_by", "acknowledged_at")
    readonly_fields = fields


_CHANGE_FIELDSETS = [
    (None, {"fields": ("incident_title", "destination", "rule", "stage_display", "stage_key", "status",
                       "public_id", "supersedes", "unowed_since", "unowed_note")}),
    ("Clock (UTC)", {"fields": ("clock_started_at", "due_at", "time_left", "next_attempt_at", "lease_expires_at",
                                "attempt_count")}),
    ("Approval", {"fields": ("requires_approval", "approved_by", "approved_at", "disclosure")}),
    ("Delivery", {"fields": ("delivered_at", "receipt_display", "failed_at", "last_error")}),
    ("Proof of submission", {"fields": ("proof_display",)}),
    ("Late", {"fields": ("late", "late_reason")}),
    ("Withdrawal", {"fields": ("withdrawn_by", "withdrawn_at", "withdrawn_reason")}),
    ("Record", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
]
_WITHDRAWAL = "Withdrawal"
# Folded unless they apply to the report.
_FOLD_UNLESS = {
    "Approval": lambda r: r.requires_approval or r.approved_at is not None,
    "Proof of submission": lambda r: r.delivered_at is not None,
    "Late": lambda r: r.late or bool(r.late_reason) or is_overdue(r, timezone.now()),
}


@admin.register(Report)
class ReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("incident_link", "destination_name", "stage_display", "status_display", "due", "time_left",
                    "attempts", "last_error_short", "escalation_reached")
    list_display_links = ("stage_display",)
    list_filter = (BoardStatusFilter, "destination", "stage_kind", OverdueFilter, DueWithinFilter, UnowedFilter,
                   "late")
    list_select_related = ("incident", "destination")
    search_fields = ("stage_name", "destination__name", "public_id")
    search_help_text = "Stage name, destination name or the report's id; an incident reference such as INC-000042."
    actions = REPORT_ACTIONS
    fieldsets = _CHANGE_FIELDSETS
    inlines = [DeliveryAttemptInline, EscalationInline]
    list_per_page = 50

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        return reports_board()

    def get_ordering(self, request: HttpRequest) -> list:
        # Not ModelAdmin.ordering: the open-first rank is an annotation of reports_board(), which the
        # system check cannot see.
        return list(BOARD_ORDERING)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The rule page links to its reports with ?rule__id__exact=N.
        return lookup == "rule__id__exact" or super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):  # noqa: ANN001, ANN201
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = search_term.strip().upper().removeprefix("INC-").lstrip("0")
        if digits.isdigit():
            results = results | queryset.filter(incident_id=int(digits))
        return results, may_have_duplicates

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        return [name for _title, options in self.fieldsets for name in options["fields"]]

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:  # noqa: ANN001
        """Sections that say nothing about this report stay out of the way: withdrawal only when
        withdrawn; approval and lateness folded when they do not apply."""
        fieldsets = []
        for title, options in self.fieldsets:
            if title == _WITHDRAWAL and (obj is None or obj.withdrawn_at is None):
                continue
            applies = _FOLD_UNLESS.get(title)
            if obj is not None and applies is not None and not applies(obj):
                options = {**options, "classes": ("collapse",)}
            fieldsets.append((title, options))
        return fieldsets

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):  # noqa: ANN201
        return super().changelist_view(request, {"title": "Clock board: report stages by deadline",
                                                 **(extra_context or {})})

    # The outbox changes only through the services: no add, no edit form, no delete.

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Approve, send, withdraw: for staff who may change reports (the buttons and actions)."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def render_change_form(self, request: HttpRequest, context: dict, add=False, change=False, form_url="", obj=None):  # noqa: ANN001, ANN201
        if obj is not None:
            context["report_label"] = context["subtitle"] = report_label(obj)
            context["time_left"] = time_left_html(obj, timezone.now())
            context["document"] = document_view(obj)
            context["board_url"] = reverse(f"{self.admin_site.name}:reporting_report_changelist")
            if self.has_act_permission(request):
                context["report_buttons"] = report_buttons(obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # --- columns and read-only fields ---------------------------------------------------------
    @admin.display(description="Incident", ordering="incident_id")
    def incident_link(self, obj: Report):  # noqa: ANN201
        if obj.is_digest:
            return format_html('<span class="digest">{}</span>', obj.subject)
        url = reverse(f"{self.admin_site.name}:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}" title="{}">{}</a>', url, obj.incident.title, obj.incident.reference)

    @admin.display(description="Incident")
    def incident_title(self, obj: Report):  # noqa: ANN201
        if obj.is_digest:
            return digest_incidents_html(obj, self.admin_site.name)
        url = reverse(f"{self.admin_site.name}:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{} {}</a> <span class="quiet">({}, {})</span>', url, obj.incident.reference,
                           obj.incident.title, obj.incident.severity, obj.incident.get_status_display())

    @admin.display(description="Destination", ordering="destination__name")
    def destination_name(self, obj: Report) -> str:
        return obj.destination.name

    @admin.display(description="Stage", ordering="stage_name")
    def stage_display(self, obj: Report):  # noqa: ANN201
        if obj.unowed_since is not None and obj.status in OPEN_REPORT_STATUSES:
            return format_html('{}#{} <strong class="stage-unowed" title="{}">rule no longer owes it</strong>',
                               obj.stage_name, obj.sequence, obj.unowed_note)
        return f"{obj.stage_name}#{obj.sequence}"

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: Report):  # noqa: ANN201
        return format_html('<span class="report-status status-{}">{}</span>', obj.status,
                           obj.status.replace("_", " "))

    @admin.display(description="Due (UTC)", ordering="due_at")
    def due(self, obj: Report) -> str:
        return f"{obj.due_at:%Y-%m-%d %H:%M}" if obj.due_at else "—"

    @admin.display(description="Time left", ordering="due_at")
    def time_left(self, obj: Report):  # noqa: ANN201
        return time_left_html(obj, timezone.now())

    @admin.display(description="Attempts", ordering="attempt_count")
    def attempts(self, obj: Report) -> int:
        return obj.attempt_count

    @admin.display(description="Last error")
    def last_error_short(self, obj: Report):  # noqa: ANN201
        if not obj.last_error:
            return ""
        first_line = obj.last_error.strip().splitlines()[0] if obj.last_error.strip() else ""
        short = first_line if len(first_line) <= 60 else first_line[:59] + "…"
        return format_html('<span title="{}">{}</span>', obj.last_error[:1000], short)

    @admin.display(description="Escalation")
    def escalation_reached(self, obj: Report) -> str:
        return highest_escalation([e.level for e in obj.escalations.all()])

    @admin.display(description="Receipt")
    def receipt_display(self, obj: Report):  # noqa: ANN201
        if obj.receipt is None:
            return "—"
        return format_html('<pre class="json-block">{}</pre>', json.dumps(obj.receipt, indent=2, ensure_ascii=False))

    @admin.display(description="Receipt record")
    def proof_display(self, obj: Report):  # noqa: ANN201
        proof = receipt_of(obj)
        if proof is None:
            return "— (written when the report is delivered)"
        rows = [
            ("SHA-256 of the bytes sent", proof.payload_sha256), ("Size", f"{proof.payload_size} bytes"),
            ("Signing key", proof.signing_key_id), ("Message id (webhook-id)", str(proof.message_id)),
            ("Sent (UTC)", f"{proof.sent_at:%Y-%m-%d %H:%M:%S}"),
            ("Delivered (UTC)", f"{proof.delivered_at:%Y-%m-%d %H:%M:%S}"),
            ("Transport", proof.get_transport_display()),
            ("To", f"{proof.address} ({proof.destination.name}, {proof.authority})"
                   + (" via the e-mail fallback" if proof.via_fallback else "")),
            ("Receiver's status", str(proof.response_status) if proof.response_status is not None else "—"),
        ]
        body = format_html_join("", "<tr><th>{}</th><td><code>{}</code></td></tr>", rows)
        answer = format_html('<pre class="json-block">{}</pre>', proof.response_excerpt or "—")
        return format_html('<table class="receipt-proof">{}</table>{}', body, answer)
