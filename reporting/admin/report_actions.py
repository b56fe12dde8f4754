"""Decisions staff take on report stages: approve, send now, withdraw, set the late reason.

Each is a changelist action (so it works on a selection) and a button on the report page (which
posts the same action for one report). Every one calls a reporting.services.reports function per
report; refusals (wrong state, disclosure above what the destination accepts, a frozen document)
come back as messages through apply_each, never as a 500.
"""
from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from incidents.actors import Actor
from incidents.admin.workflow import apply_each, back_from_action, render_confirmation
from reporting.admin.clock import humanize_duration, is_overdue
from reporting.admin.forms import ApproveForm, LateReasonForm, SendNowForm, WithdrawForm
from reporting.choices import DISCLOSURE_ORDER, OPEN_REPORT_STATUSES, ReportStatus
from reporting.models import Report
from reporting.services.reports import report_approve, report_send_now, report_set_late_reason, report_withdraw


def report_label(report: Report) -> str:
    """How staff name a report in messages: incident, stage and destination (not the row ids)."""
    return f"{report.subject} {report.stage_name}#{report.sequence} → {report.destination.name}"


def _with_names(queryset: QuerySet) -> QuerySet:
    return queryset.select_related("incident", "destination")


def _apply(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, done_verb: str, apply) -> None:  # noqa: ANN001
    apply_each(modeladmin, request, _with_names(queryset), done_verb=done_verb, apply=apply, label=report_label)


def _clock_note(report: Report) -> str:
    now = timezone.now()
    parts = [f"{report.get_status_display().lower()}", f"to {report.destination.name}"]
    if report.due_at is None:
        parts.append("clock not started")
    elif is_overdue(report, now):
        parts.append(f"overdue by {humanize_duration(now - report.due_at)}")
    else:
        parts.append(f"due in {humanize_duration(report.due_at - now)}")
    return ", ".join(parts)


def _confirm(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *,
             extra_note: Callable[[Report], str] = _clock_note, **kwargs) -> HttpResponse:  # noqa: ANN003
    return render_confirmation(modeladmin, request, _with_names(queryset), note=extra_note, label=report_label,
                               **kwargs)


@admin.action(description="Approve selected stages…", permissions=["act"])
def approve_reports(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    reports = list(_with_names(queryset))
    # The widest level any selected destination accepts; each report is still held to its own
    # destination's limit by report_approve (a refusal is reported per report).
    widest = max((r.destination.max_disclosure for r in reports), key=DISCLOSURE_ORDER.index,
                 default=DISCLOSURE_ORDER[0])
    form = ApproveForm(request.POST if "apply" in request.POST else None, max_disclosure=widest)
    if form.is_bound and form.is_valid():
        actor = Actor.for_user(request.user)
        disclosure, reason = form.cleaned_data["disclosure"], form.cleaned_data["reason"]
        _apply(modeladmin, request, queryset, "Approved",
               lambda report: report_approve(report=report, actor=actor, disclosure=disclosure, reason=reason))
        return back_from_action(modeladmin, request)
    return _confirm(
        modeladmin, request, queryset, action="approve_reports", title="Approve report stages",
        intro="Approving lets these stages go out (at once if their clock has started). Choose how much they may "
        "disclose; each destination's maximum is noted beside it. Who approved, when and at which level is recorded.",
        form=form, submit_label="Approve", skipped=[r for r in reports if r.status != ReportStatus.AWAITING_APPROVAL],
        extra_note=lambda r: (f"{_clock_note(r)}; accepts at most "
                              f"“{r.destination.get_max_disclosure_display()}”"),
    )


@admin.action(description="Send selected stages now", permissions=["act"])
def send_reports_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    """Retry a failed stage or hurry a pending one. When a stage is overdue, first offer to give a late reason."""
    reports = list(_with_names(queryset))
    now = timezone.now()
    form = SendNowForm(request.POST if "apply" in request.POST else None)
    overdue = [r for r in reports if is_overdue(r, now)]
    if not overdue or (form.is_bound and form.is_valid()):
        actor = Actor.for_user(request.user)
        late_reason = form.cleaned_data["late_reason"] if form.is_bound else ""
        _apply(modeladmin, request, queryset, "Queued for sending",
               lambda report: report_send_now(
                   report=report, actor=actor, late_reason=late_reason if is_overdue(report, now) else ""))
        return back_from_action(modeladmin, request)
    if len(overdue) == 1 and not form.is_bound:
        form = SendNowForm(initial={"late_reason": overdue[0].late_reason})
    return _confirm(
        modeladmin, request, queryset, action="send_reports_now", title="Send report stages now",
        intro="Some of these stages are overdue. They are sent anyway, marked late; a late notice should state why. "
        "The reason goes into stages not yet sent once (a resent stage repeats its frozen document).",
        form=form, submit_label="Send now",
        skipped=[r for r in reports if r.status not in (ReportStatus.PENDING, ReportStatus.FAILED)],
    )


@admin.action(description="Withdraw selected stages…", permissions=["act"])
def withdraw_reports(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    form = WithdrawForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        actor = Actor.for_user(request.user)
        reason = form.cleaned_data["reason"]
        _apply(modeladmin, request, queryset, "Withdrew",
               lambda report: report_withdraw(report=report, actor=actor, reason=reason))
        return back_from_action(modeladmin, request)
    return _confirm(
        modeladmin, request, queryset, action="withdraw_reports", title="Withdraw report stages",
        intro="A withdrawn stage is never sent and cannot be reopened. Only do this when the stage is not owed "
        "(for example it was opened in error); the reason is kept with each report and in the audit trail.",
        form=form, submit_label="Withdraw",
        skipped=[r for r in _with_names(queryset) if r.status not in OPEN_REPORT_STATUSES],
    )


@admin.action(description="Set late reason…", permissions=["act"])
def set_late_reason(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    form = LateReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        actor = Actor.for_user(request.user)
        reason = form.cleaned_data["reason"]
        _apply(modeladmin, request, queryset, "Set the late reason of",
               lambda report: report_set_late_reason(report=report, actor=actor, reason=reason))
        return back_from_action(modeladmin, request)
    reports = list(_with_names(queryset))
    if len(reports) == 1 and not form.is_bound:
        form = LateReasonForm(initial={"reason": reports[0].late_reason})
    return _confirm(
        modeladmin, request, queryset, action="set_late_reason", title="Set late reason",
        intro="The late reason travels with the report to the authority. It can be set until the stage's document "
        "is frozen at its first send.",
        form=form, submit_label="Save late reason", skipped=[r for r in reports if r.frozen_at is not None],
    )


REPORT_ACTIONS = [approve_reports, send_reports_now, withdraw_reports, set_late_reason]


def report_buttons(report: Report) -> list[tuple[str, str]]:
    """(action name, label) for what the report's state allows."""
    buttons = []
    if report.status == ReportStatus.AWAITING_APPROVAL:
        buttons.append(("approve_reports", "Approve…"))
    if report.status in (ReportStatus.PENDING, ReportStatus.FAILED):
        buttons.append(("send_reports_now", "Send now" if not is_overdue(report, timezone.now()) else "Send now…"))
    if report.status in OPEN_REPORT_STATUSES and report.frozen_at is None:
        buttons.append(("set_late_reason", "Set late reason…"))
    if report.status in OPEN_REPORT_STATUSES:
        buttons.append(("withdraw_reports", "Withdraw…"))
    return buttons
