"""Reporting rules and their stages, edited as one form; every save is one audit event with the whole rule.

A rule that reports refer to cannot be deleted (they keep their rule: PROTECT): deactivate it.
Edits apply at once to the rule's open, unfrozen stages (reporting.services.rule_reschedule): deadlines
move, a renamed stage relabels them (a stage's key is its identity, fixed once saved), and a stage the
rule no longer owes stays open, flagged on the clock board for a person to send or withdraw.
"""
from __future__ import annotations

import yaml
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from incidents.actors import Actor
from incidents.admin.service_errors import ServiceErrorsAdminMixin, refusal
from reporting.admin.forms import ReportingRuleForm, RuleStageForm
from reporting.models import ReportingRule, RuleStage
from reporting.services.admin_changes import rule_delete, rule_record_change
from reporting.services.rules import rule_as_data

_BEFORE_ATTR = "_mir_rule_before"
# Above any real position: rows park here while a save swaps positions or names (unique per rule).
_PARKING_POSITION = 20000


class RuleStageInline(admin.TabularInline):
    model = RuleStage
    form = RuleStageForm
    fields = ("name", "key", "kind", "position", "clock_start", "offset", "requires_approval", "repeat_every",
              "on_material_change", "digest_period", "digest_content")
    extra = 0
    ordering = ("position",)


@admin.register(ReportingRule)
class ReportingRuleAdmin(ServiceErrorsAdminMixin, admin.ModelAdmin):
    form = ReportingRuleForm
    list_display = ("name", "destination", "is_active", "severities", "stage_count", "report_count", "updated_at")
    list_filter = ("destination", "is_active")
    list_select_related = ("destination",)
    search_fields = ("name", "description", "destination__name")
    inlines = [RuleStageInline]
    change_readonly_fields = ("report_count", "public_id", "created_at", "updated_at", "export_yaml")

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        return super().get_queryset(request).annotate(
            _stages=Count("stages", distinct=True), _reports=Count("reports", distinct=True)
        )

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:  # noqa: ANN001
        fieldsets = [
            (None, {"fields": ("name", "description", "destination", "is_active")}),
            ("Which incidents", {"fields": ("categories", "min_severity", "max_severity", "determinations",
                                            "requires_imminent_risk", "requires_reportable_decision")}),
            ("Escalation", {"fields": ("escalation_points",)}),
            ("Audit note", {"fields": ("change_reason",)}),
        ]
        if obj is not None:
            fieldsets += [
                ("Record", {"fields": ("report_count", "public_id", "created_at", "updated_at")}),
                ("Export (YAML, as rules_load reads it; read-only)", {"classes": ("collapse",),
                                                                      "fields": ("export_yaml",)}),
            ]
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        return () if obj is None else self.change_readonly_fields

    @admin.display(description="Severities")
    def severities(self, obj: ReportingRule) -> str:
        return obj.min_severity if obj.min_severity == obj.max_severity else f"{obj.max_severity} … {obj.min_severity}"

    @admin.display(description="Stages", ordering="_stages")
    def stage_count(self, obj: ReportingRule) -> int:
        return obj._stages

    @admin.display(description="Reports", ordering="_reports")
    def report_count(self, obj: ReportingRule):  # noqa: ANN201
        count = getattr(obj, "_reports", None)
        if count is None:
            count = obj.reports.count()
        url = reverse(f"{self.admin_site.name}:reporting_report_changelist")
        return format_html('<a href="{}?status=all&rule__id__exact={}">{}</a>', url, obj.pk, count)

    @admin.display(description="Rule file")
    def export_yaml(self, obj: ReportingRule):  # noqa: ANN201
        text = yaml.safe_dump({"version": 1, "rules": [rule_as_data(obj)]}, sort_keys=False, allow_unicode=True)
        return format_html('<pre class="json-block" id="rule-yaml">{}</pre>', text)

    # --- saving: Django saves the rule and its stages; one audit event records the result ----
    def save_model(self, request: HttpRequest, obj: ReportingRule, form, change: bool) -> None:  # noqa: ANN001
        if change:
            stored = ReportingRule.objects.select_related("destination").get(pk=obj.pk)
            setattr(request, _BEFORE_ATTR, rule_as_data(stored))
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:  # noqa: ANN001
        if formset.model is RuleStage:
            self._park_moved_stages(formset)
        super().save_formset(request, form, formset, change)

    @staticmethod
    def _park_moved_stages(formset) -> None:  # noqa: ANN001
        """Rows whose name or position changes (or that go) move aside first: a swap of two positions or
        names would otherwise hit the unique constraints halfway through the save."""
        moving = [
            form.instance.pk for form in formset.initial_forms
            if form.instance.pk and (form in formset.deleted_forms or {"name", "position"} & set(form.changed_data))
        ]
        for offset, pk in enumerate(moving):
            RuleStage.objects.filter(pk=pk).update(position=_PARKING_POSITION + offset, name=f"parked-{pk}")

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        super().save_related(request, form, formsets, change)
        with refusal():
            rule_record_change(
                rule=form.instance, actor=Actor.for_user(request.user), created=not change,
                before=getattr(request, _BEFORE_ATTR, None), reason=form.cleaned_data.get("change_reason", ""),
            )

    # --- deleting: only rules no report refers to, through rule_delete --------------------------
    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        rule = self.get_object(request, object_id)
        if rule is not None:
            count = rule.reports.count()
            if count:
                self.message_user(
                    request, f"“{rule.name}” cannot be deleted: {count} report(s) were opened under it and keep "
                    "referring to it. Untick “Is active” to stop it opening new ones.", messages.ERROR,
                )
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:reporting_reportingrule_change", args=[rule.pk])
                )
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: ReportingRule) -> None:
        rule_delete(rule=obj, actor=Actor.for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        actor = Actor.for_user(request.user)
        for rule in queryset:
            rule_delete(rule=rule, actor=actor)
