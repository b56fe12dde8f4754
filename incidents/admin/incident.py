"""The staff admin of incidents. Every write goes through incidents.services, never model.save().

Filing (add) is one incident_create call with the inline parts, made in save_related because only
there does the admin hand over the formsets. Editing is incident_update for the incident's fields
plus one part service per changed, removed or added row. Django wraps the change view in one
transaction, so the incident and its parts commit together or not at all.
"""
from __future__ import annotations

import re

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.forms import BaseFormSet, ModelForm
from django.http import HttpRequest

from incidents.actors import Actor
from incidents.admin.audit import audit_rows
from incidents.admin.forms import IncidentForm
from incidents.admin.inlines import AccountInline, EvidenceAddInline, EvidenceInline, IndicatorInline
from incidents.admin.service_errors import ServiceErrorsAdminMixin, refusal
from incidents.admin.workflow import INCIDENT_ACTIONS, workflow_buttons
from incidents.models import Account, Evidence, Incident, Indicator
from incidents.services.intake import CREATE_FIELDS, incident_create
from incidents.services.parts import (
    account_remove,
    account_update,
    evidence_remove,
    evidence_update,
    incident_parts_add,
    indicator_remove,
    indicator_update,
)
from incidents.services.workflow import UPDATE_FIELDS, incident_update

# Owned by the services (workflow, intake grouping, reportability): shown, never posted.
SERVICE_OWNED_FIELDS = (
    "reference", "public_id", "status", "determination", "dismissal_reason", "determined_at", "resolved_at",
    "closed_at", "reportability", "reportability_reason", "reportability_decided_by", "reportability_decided_at",
    "detection_source", "detector", "filed_by", "fingerprint", "occurrence_count", "last_seen_at", "created_at",
    "updated_at",
)
# Set when filing, fixed afterwards (the clocks of filed reports start from detected_at).
FILED_ONLY_FIELDS = tuple(sorted(CREATE_FIELDS - UPDATE_FIELDS))
_REFERENCE_RE = re.compile(r"^\s*INC-?0*(\d{1,18})\s*$", re.IGNORECASE)

_DETAIL_FIELDSETS = [
    ("AI system", {"fields": (
        "model_name", "model_version", "surface", "internal_use", "model_tools", "model_involvement",
        "safeguards_evaded",
    )}),
    ("Actor", {"classes": ("collapse",), "fields": ("actor_type", "actor_origin", "actor_confidence")}),
    ("Activity", {"classes": ("collapse",), "fields": ("techniques", "event_chain")}),
    ("Impact", {"classes": ("collapse",), "fields": ("affected_parties", "deaths", "injuries", "economic_loss_usd")}),
    ("Response", {"classes": ("collapse",), "fields": (
        "actions_taken", "actions_planned", "recommendation", "notified_parties", "root_cause", "unknowns",
    )}),
    ("Handling", {"fields": ("tlp",)}),
]
_CLASSIFICATION = (
    "harm_types", "imminent_risk_to_life", "near_miss", "cross_border", "countries", "critical_infrastructure_sector",
)
ADD_FIELDSETS = [
    (None, {"fields": ("title", "summary", "category", "severity")}),
    ("Clocks (UTC)", {"fields": ("detected_at", "aware_at", "occurred_start", "occurred_end", "occurred_precision")}),
    ("Classification", {"fields": _CLASSIFICATION}),
    ("How it was detected", {
        "classes": ("collapse",),
        "description": "Leave empty when staff found it; name the source for an external tip.",
        "fields": ("external_source", "detector_version", "score", "threshold"),
    }),
    *_DETAIL_FIELDSETS,
]
CHANGE_FIELDSETS = [
    (None, {"fields": ("reference", "title", "summary", "category", "severity")}),
    ("Workflow (changed with the buttons above or the list's actions)", {"fields": (
        "status", "determination", "dismissal_reason", "reportability", "reportability_decided_by",
        "reportability_decided_at", "reportability_reason",
    )}),
    ("Clocks (UTC)", {"fields": (
        "detected_at", "aware_at", "occurred_start", "occurred_end", "occurred_precision", "determined_at",
        "resolved_at", "closed_at",
    )}),
    ("Classification", {"fields": _CLASSIFICATION}),
    ("How it was detected", {"fields": (
        "detection_source", "detector", "detector_version", "score", "threshold", "filed_by", "external_source",
        "fingerprint", "occurrence_count", "last_seen_at",
    )}),
    *_DETAIL_FIELDSETS,
    ("Record", {"classes": ("collapse",), "fields": ("public_id", "created_at", "updated_at")}),
    ("Audit note", {"fields": ("change_reason", "seen_version")}),
]


def _adopt(target: Incident, source: Incident) -> None:
    """Make the admin's unsaved instance the filed incident, for its redirect and log entry."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


def _split(formset: BaseFormSet) -> tuple[list[ModelForm], list[ModelForm], list[ModelForm]]:
    """(new, changed, removed) forms of a validated inline formset."""
    removed = [form for form in formset.deleted_forms if form.instance.pk]
    new, changed = [], []
    for form in formset.forms:
        if form in formset.deleted_forms or not form.has_changed():
            continue
        (changed if form.instance.pk else new).append(form)
    return new, changed, removed


def _row_label(form: ModelForm) -> str:
    initial = form.initial
    if form._meta.model is Indicator:
        return f"indicator {initial.get('type')}:{initial.get('value')}"
    if form._meta.model is Account:
        return f"account {initial.get('identifier')}"
    return f"evidence {initial.get('kind')} “{str(initial.get('description', ''))[:40]}”"


@admin.register(Incident)
class IncidentAdmin(ServiceErrorsAdminMixin, admin.ModelAdmin):
    form = IncidentForm
    # Codes rather than the long choice labels, and compact dates: ten columns must fit one screen.
    list_display = (
        "reference", "title", "category_code", "severity_code", "status_short", "determination", "detected_by",
        "occurrences", "detected", "created",
    )
    list_display_links = ("reference", "title")
    list_filter = ("category", "severity", "status", "determination", "reportability", "detector", "created_at")
    list_select_related = ("detector",)
    search_fields = ("title", "summary", "fingerprint", "indicators__value")
    search_help_text = "Title, summary, fingerprint, an indicator value, or a reference such as INC-000042."
    actions = INCIDENT_ACTIONS
    readonly_fields = SERVICE_OWNED_FIELDS
    save_on_top = True

    @admin.display(description="Reference", ordering="pk")
    def reference(self, obj: Incident) -> str:
        return obj.reference

    @admin.display(description="Category", ordering="category")
    def category_code(self, obj: Incident) -> str:
        return obj.category

    @admin.display(description="Occurrences", ordering="occurrence_count")
    def occurrences(self, obj: Incident) -> int:
        return obj.occurrence_count

    @admin.display(description="Severity", ordering="severity")
    def severity_code(self, obj: Incident) -> str:
        return obj.severity

    @admin.display(description="Status", ordering="status")
    def status_short(self, obj: Incident) -> str:
        return obj.status.capitalize()

    @admin.display(description="Detected (UTC)", ordering="detected_at")
    def detected(self, obj: Incident) -> str:
        return f"{obj.detected_at:%Y-%m-%d %H:%M}"

    @admin.display(description="Filed (UTC)", ordering="created_at")
    def created(self, obj: Incident) -> str:
        return f"{obj.created_at:%Y-%m-%d %H:%M}"

    @admin.display(description="Detected by", ordering="detection_source")  # a detector's name, or staff / tip
    def detected_by(self, obj: Incident) -> str:
        if obj.detector_id:
            return obj.detector.name
        return obj.get_detection_source_display()

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):  # noqa: ANN001, ANN201
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        match = _REFERENCE_RE.match(search_term)
        if match:
            results = results | queryset.filter(pk=int(match.group(1)))
        return results, may_have_duplicates

    def get_readonly_fields(self, request: HttpRequest, obj: Incident | None = None) -> tuple[str, ...]:
        return self.readonly_fields + (FILED_ONLY_FIELDS if obj is not None else ())

    def get_fieldsets(self, request: HttpRequest, obj: Incident | None = None) -> list:
        return ADD_FIELDSETS if obj is None else CHANGE_FIELDSETS

    def get_inlines(self, request: HttpRequest, obj: Incident | None) -> list:
        if obj is None:
            return [EvidenceAddInline, IndicatorInline, AccountInline]
        return [EvidenceInline, EvidenceAddInline, IndicatorInline, AccountInline]

    # Incidents are never deleted: the record (and its audit trail, which protects it) is the point.
    def has_delete_permission(self, request: HttpRequest, obj: Incident | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Incident) -> None:
        raise PermissionDenied

    def delete_queryset(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        raise PermissionDenied

    def render_change_form(self, request: HttpRequest, context: dict, add=False, change=False, form_url="", obj=None):  # noqa: ANN001, ANN201
        if obj is not None:
            context["audit_rows"] = audit_rows(obj)
            if self.has_change_permission(request, obj):
                context["workflow_buttons"] = workflow_buttons(obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def save_model(self, request: HttpRequest, obj: Incident, form: IncidentForm, change: bool) -> None:
        if not change:
            return  # filed in save_related, with its parts, by one incident_create call
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in UPDATE_FIELDS}
        if fields:
            with refusal():
                incident_update(
                    incident=obj, actor=Actor.for_user(request.user), fields=fields,
                    reason=form.cleaned_data.get("change_reason", ""),
                )

    def save_related(self, request: HttpRequest, form: IncidentForm, formsets: list, change: bool) -> None:
        actor = Actor.for_user(request.user)
        reason = form.cleaned_data.get("change_reason", "")
        new_parts: dict[str, list] = {"accounts": [], "indicators": [], "evidence": []}
        edits = []
        for formset in formsets:
            new, changed, removed = _split(formset)
            edits += [(form_, "remove") for form_ in removed] + [(form_, "update") for form_ in changed]
            for form_ in new:
                data = form_.cleaned_data
                if formset.model is Evidence:
                    new_parts["evidence"].append(form_.evidence_input)
                elif formset.model is Indicator:
                    new_parts["indicators"].append({"type": data["type"], "value": data["value"]})
                elif formset.model is Account:
                    new_parts["accounts"].append(
                        {"id": data["identifier"], "enforcement_action": data["enforcement_action"]}
                    )
        if not change:
            with refusal():
                result = incident_create(
                    actor=actor,
                    fields={name: value for name, value in form.cleaned_data.items() if name in CREATE_FIELDS},
                    **new_parts,
                )
            _adopt(form.instance, result.incident)
            return
        # Removals first, so a row removed and re-added in one save does not collide with itself.
        for form_, kind in sorted(edits, key=lambda edit: edit[1] != "remove"):
            with refusal(_row_label(form_)):
                self._save_part(form_, kind, actor=actor, reason=reason)
        if any(new_parts.values()):
            with refusal():
                incident_parts_add(incident=form.instance, actor=actor, **new_parts)

    @staticmethod
    def _save_part(form: ModelForm, kind: str, *, actor: Actor, reason: str) -> None:
        row, data = form.instance, form.cleaned_data
        if isinstance(row, Evidence):
            if kind == "remove":
                evidence_remove(evidence=row, actor=actor, reason=reason)
            else:
                evidence_update(
                    evidence=row, actor=actor, kind=data["kind"], description=data["description"], reason=reason
                )
        elif isinstance(row, Indicator):
            if kind == "remove":
                indicator_remove(indicator=row, actor=actor, reason=reason)
            else:
                indicator_update(
                    indicator=row, actor=actor, indicator_type=data["type"], value=data["value"], reason=reason
                )
        elif isinstance(row, Account):
            if kind == "remove":
                account_remove(account=row, actor=actor, reason=reason)
            else:
                account_update(
                    account=row, actor=actor, identifier=data["identifier"],
                    enforcement_action=data["enforcement_action"], reason=reason,
                )
