"""Workflow actions on incidents: one service call per selected incident, and an honest report.

A multi-selection is applied incident by incident (each in its own service transaction), so one
incident in the wrong state does not block the others; staff are told how many moved and exactly
which did not, and why. Refusals are messages, never 500s.
"""
from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from incidents.actors import Actor
from incidents.admin.forms import DismissForm, ReportabilityForm
from incidents.choices import Reportability, Status
from incidents.models import Incident
from incidents.services.workflow import incident_decide_reportability, incident_transition
from incidents.transitions import ALLOWED_TRANSITIONS, TransitionError

CONFIRMATION_TEMPLATE = "admin/incidents/action_confirmation.html"
# Enough to act on; a longer list of failures is summarised rather than flooding the page.
MAX_FAILURE_MESSAGES = 10
FROM_CHANGE = "_from_change"  # posted by the buttons on the change page: go back there afterwards


def refusal_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)


def apply_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    done_verb: str,
    apply: Callable[[object], object],
    label: Callable[[object], str] | None = None,
) -> None:
    """Apply ``apply`` to each selected object; report successes and each refusal as messages.

    ``label`` names an object in a refusal (default: its ``reference``, else ``str(obj)``).
    """
    succeeded, failed = 0, []
    for obj in queryset.order_by("pk"):
        try:
            apply(obj)
        except (TransitionError, ValidationError) as exc:
            failed.append((obj, refusal_text(exc)))
        else:
            succeeded += 1
    noun = modeladmin.model._meta.verbose_name if succeeded == 1 else modeladmin.model._meta.verbose_name_plural
    if succeeded:
        modeladmin.message_user(request, f"{done_verb} {succeeded} {noun}.", messages.SUCCESS)
    if failed:
        modeladmin.message_user(
            request, f"{len(failed)} of {len(failed) + succeeded} not {done_verb.lower()}:", messages.ERROR
        )
    for obj, why in failed[:MAX_FAILURE_MESSAGES]:
        name = label(obj) if label else getattr(obj, "reference", None) or str(obj)
        modeladmin.message_user(request, f"{name}: {why}", messages.ERROR)
    if len(failed) > MAX_FAILURE_MESSAGES:
        modeladmin.message_user(request, f"… and {len(failed) - MAX_FAILURE_MESSAGES} more.", messages.ERROR)


def back_from_action(modeladmin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse | None:
    """After a button on a change page, return to that page; otherwise the changelist (None)."""
    pk = request.POST.get(FROM_CHANGE, "")
    if not pk.isdigit():
        return None
    opts = modeladmin.model._meta
    return HttpResponseRedirect(
        reverse(f"{modeladmin.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[pk])
    )


def render_confirmation(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    intro: str,
    form: Form,
    submit_label: str,
    skipped: list | None = None,
    note: Callable[[object], str] | None = None,
    label: Callable[[object], str] | None = None,
) -> TemplateResponse:
    """An intermediate page like Django's delete confirmation, with a form (reason, decision).

    ``label`` names each object on the page (default ``str(obj)``).
    """
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "opts": opts,
        # (object, note, label): the note shows the state the action would change, e.g. a prior decision.
        "objects": [(obj, note(obj) if note else "", label(obj) if label else str(obj))
                    for obj in queryset.order_by("pk")],
        "skipped": [label(obj) if label else str(obj) for obj in skipped or []],
        "form": form,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "submit_label": submit_label,
        "from_change": request.POST.get(FROM_CHANGE, ""),
        "media": modeladmin.media + form.media,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, CONFIRMATION_TEMPLATE, context)


def _transition_action(to: Status, name: str, description: str, done_verb: str) -> Callable:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        actor = Actor.for_user(request.user)
        apply_each(
            modeladmin, request, queryset, done_verb=done_verb,
            # The plain value: TransitionError's message shows repr(target), which for the enum member
            # would read "Status.RESOLVED" to staff.
            apply=lambda incident: incident_transition(incident=incident, actor=actor, to=to.value),
        )
        return back_from_action(modeladmin, request)

    action.__name__ = name
    return admin.action(description=description, permissions=["change"])(action)


triage_incidents = _transition_action(
    Status.TRIAGED, "triage_incidents", "Triage selected incidents (or reopen dismissed ones)", "Triaged"
)
confirm_incidents = _transition_action(
    Status.CONFIRMED, "confirm_incidents", "Confirm selected incidents as misuse", "Confirmed"
)
resolve_incidents = _transition_action(Status.RESOLVED, "resolve_incidents", "Resolve selected incidents", "Resolved")
close_incidents = _transition_action(Status.CLOSED, "close_incidents", "Close selected incidents", "Closed")


@admin.action(description="Dismiss selected incidents as false positives…", permissions=["change"])
def dismiss_incidents(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    form = DismissForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        actor = Actor.for_user(request.user)
        reason = form.cleaned_data["reason"]
        apply_each(
            modeladmin, request, queryset, done_verb="Dismissed",
            apply=lambda incident: incident_transition(
                incident=incident, actor=actor, to=Status.DISMISSED.value, reason=reason
            ),
        )
        return back_from_action(modeladmin, request)
    skipped = [i for i in queryset.order_by("pk") if Status.DISMISSED not in ALLOWED_TRANSITIONS.get(i.status, ())]
    return render_confirmation(
        modeladmin, request, queryset, action="dismiss_incidents", title="Dismiss incidents",
        intro="Dismissing records these incidents as false positives. Say why: the reason is kept with each "
        "incident and in its audit trail.",
        form=form, submit_label="Dismiss", skipped=skipped, note=lambda incident: incident.get_status_display(),
    )


@admin.action(description="Record reportability decision…", permissions=["change"])
def decide_reportability(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    form = ReportabilityForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        actor = Actor.for_user(request.user)
        reportable = form.cleaned_data["decision"] == "reportable"
        reason = form.cleaned_data["reason"]
        apply_each(
            modeladmin, request, queryset, done_verb="Recorded the decision for",
            apply=lambda incident: incident_decide_reportability(
                incident=incident, actor=actor, reportable=reportable, reason=reason
            ),
        )
        return back_from_action(modeladmin, request)
    return render_confirmation(
        modeladmin, request, queryset.select_related("reportability_decided_by"), action="decide_reportability",
        title="Record reportability decision",
        intro="Decide whether these incidents must be reported to the authorities. Who decided, when and why "
        "is recorded; a decision not to report is a record too.",
        form=form, submit_label="Record decision", note=_current_decision,
    )


def _current_decision(incident: Incident) -> str:
    if incident.reportability == Reportability.PENDING:
        return "not decided yet"
    decided_by = incident.reportability_decided_by.get_username() if incident.reportability_decided_by else "?"
    return f"currently {incident.get_reportability_display()} (by {decided_by}): this replaces it"


INCIDENT_ACTIONS = [
    triage_incidents, confirm_incidents, dismiss_incidents, resolve_incidents, close_incidents, decide_reportability,
]

# Buttons on the change page: the action that makes each allowed move.
_MOVE_BUTTONS = {
    Status.TRIAGED: ("triage_incidents", "Triage"),
    Status.CONFIRMED: ("confirm_incidents", "Confirm"),
    Status.DISMISSED: ("dismiss_incidents", "Dismiss…"),
    Status.RESOLVED: ("resolve_incidents", "Resolve"),
    Status.CLOSED: ("close_incidents", "Close"),
}
_REOPEN = {(Status.DISMISSED, Status.TRIAGED), (Status.RESOLVED, Status.CONFIRMED)}


def workflow_buttons(incident: Incident) -> list[tuple[str, str]]:
    """(action name, label) for each move the status table allows from the incident's status."""
    buttons = []
    for target in sorted(ALLOWED_TRANSITIONS.get(incident.status, ()), key=list(Status).index):
        name, label = _MOVE_BUTTONS[target]
        if (incident.status, target) in _REOPEN:
            label = f"Reopen ({label.lower()})"
        buttons.append((name, label))
    buttons.append(("decide_reportability", "Record reportability decision…"))
    return buttons
