"""Escalations: the alerts raised when a stage nears or passes its deadline, or fails for good.

Unacknowledged first. Acknowledging (escalation_acknowledge) records who has seen it; the stage
itself is unchanged and keeps escalating until it is delivered or withdrawn.
"""
from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from incidents.actors import Actor
from incidents.admin.read_only import ReadOnlyAdminMixin
from incidents.admin.workflow import apply_each, back_from_action
from reporting.admin.report_actions import report_label
from reporting.models import Escalation
from reporting.selectors import ESCALATION_ORDERING, escalations_board
from reporting.services.admin_changes import escalation_acknowledge


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "Not yet"), ("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN001, ANN201
        if self.value() == "no":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


def _label(escalation: Escalation) -> str:
    return f"{escalation.get_level_display()} on {report_label(escalation.report)}"


@admin.action(description="Acknowledge selected escalations", permissions=["acknowledge"])
def acknowledge_escalations(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    actor = Actor.for_user(request.user)
    apply_each(
        modeladmin, request, queryset.select_related("report__incident", "report__destination"),
        done_verb="Acknowledged", label=_label,
        apply=lambda escalation: escalation_acknowledge(escalation=escalation, actor=actor),
    )
    return back_from_action(modeladmin, request)


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("level_display", "incident_link", "destination_name", "stage", "created_at", "notified_at",
                    "acknowledged")
    list_filter = (AcknowledgedFilter, "level", "report__destination")
    list_select_related = ("report__incident", "report__destination", "acknowledged_by")
    actions = [acknowledge_escalations]
    fields = ("report_link", "level", "message", "created_at", "notified_at", "acknowledged_by", "acknowledged_at")
    readonly_fields = fields
    ordering = ESCALATION_ORDERING

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        return escalations_board()
    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.display(description="Level", ordering="level")
    def level_display(self, obj: Escalation):  # noqa: ANN201
        css = "clock-overdue" if obj.level in ("overdue", "permanent_failure") else ""
        return format_html('<span class="{}">{}</span>', css, obj.get_level_display())

    @admin.display(description="Incident", ordering="report__incident_id")
    def incident_link(self, obj: Escalation):  # noqa: ANN201
        if obj.report.incident_id is None:
            return obj.report.subject
        url = reverse(f"{self.admin_site.name}:incidents_incident_change", args=[obj.report.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.report.incident.reference)

    @admin.display(description="Destination", ordering="report__destination__name")
    def destination_name(self, obj: Escalation) -> str:
        return obj.report.destination.name

    @admin.display(description="Stage")
    def stage(self, obj: Escalation):  # noqa: ANN201
        url = reverse(f"{self.admin_site.name}:reporting_report_change", args=[obj.report_id])
        return format_html('<a href="{}">{}#{}</a>', url, obj.report.stage_name, obj.report.sequence)

    @admin.display(description="Report")
    def report_link(self, obj: Escalation):  # noqa: ANN201
        url = reverse(f"{self.admin_site.name}:reporting_report_change", args=[obj.report_id])
        return format_html('<a href="{}">{}</a>', url, report_label(obj.report))

    @admin.display(description="Acknowledged", ordering="acknowledged_at")
    def acknowledged(self, obj: Escalation) -> str:
        if obj.acknowledged_at is None:
            return "not yet"
        who = obj.acknowledged_by.get_username() if obj.acknowledged_by else "?"
        return f"{who}, {obj.acknowledged_at:%Y-%m-%d %H:%M}"
