"""Staff side of acknowledgements and questions: the open questions as a work list, answered in the admin.

Answering goes through reporting.portal.services.questions.question_answer (audited, the staff member as
actor), which opens the supplemental stage that delivers the answer.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from incidents.actors import Actor
from incidents.admin.read_only import ReadOnlyAdminMixin
from incidents.admin.service_errors import ServiceErrorsAdminMixin, ServiceErrorsForm, refusal
from reporting.portal.models import Acknowledgement, Question, QuestionStatus
from reporting.portal.services.questions import ANSWER_MAX, question_answer


def _copy_saved(obj: Question, saved: Question) -> None:
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False


class QuestionAnswerForm(ServiceErrorsForm):
    answer = forms.CharField(
        max_length=ANSWER_MAX, widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Sent to the authority as a supplemental report (signed, through the destination's normal "
                  "delivery), together with the question. Account identifiers are replaced by the "
                  "destination's pseudonyms, as in every report.",
    )

    class Meta:
        model = Question
        fields = ("answer",)


class _AdminLinks:
    admin_site: admin.AdminSite

    @admin.display(description="Report asked about")
    def report_link(self, obj: Question | Acknowledgement) -> str:
        url = reverse(f"{self.admin_site.name}:reporting_report_change", args=[obj.report_id])
        report = obj.report
        return format_html('<a href="{}">{} {}#{} to {}</a>', url, report.incident.reference, report.stage_name,
                           report.sequence, report.destination.name)

    @admin.display(description="Incident")
    def incident_link(self, obj: Question | Acknowledgement) -> str:
        url = reverse(f"{self.admin_site.name}:incidents_incident_change", args=[obj.report.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.report.incident.reference)

    @admin.display(description="Authority", ordering="reviewer__authority__name")
    def authority(self, obj: Question | Acknowledgement) -> str:
        return obj.reviewer.authority.name

    @admin.display(description="Reviewer", ordering="reviewer__user__username")
    def reviewer_name(self, obj: Question | Acknowledgement) -> str:
        return obj.reviewer.user.get_username()


@admin.register(Question)
class QuestionAdmin(_AdminLinks, ServiceErrorsAdminMixin, admin.ModelAdmin):
    """Open questions first visit, soonest wished-by first (Meta.ordering); answer one on its page."""

    form = QuestionAnswerForm
    list_display = ("wished_by", "status", "authority", "report_link", "incident_link", "excerpt", "asked_at",
                    "answer_stage")
    list_display_links = ("wished_by",)
    list_filter = ("status", "reviewer__authority")
    list_select_related = ("report__incident", "report__destination", "reviewer__authority", "reviewer__user",
                           "answer_report")
    search_fields = ("text", "report__incident__reference", "report__public_id")
    readonly_fields = ("authority", "reviewer_name", "report_link", "incident_link", "asked_at", "wished_by",
                       "text", "status", "answered_by", "answered_at", "answer_stage", "public_id")

    @admin.display(description="Question")
    def excerpt(self, obj: Question) -> str:
        return obj.text if len(obj.text) <= 120 else f"{obj.text[:117]}…"

    @admin.display(description="Answer stage")
    def answer_stage(self, obj: Question) -> str:
        if obj.answer_report_id is None:
            return "—"
        url = reverse(f"{self.admin_site.name}:reporting_report_change", args=[obj.answer_report_id])
        return format_html('<a href="{}">{}#{} ({})</a>', url, obj.answer_report.stage_name,
                           obj.answer_report.sequence, obj.answer_report.get_status_display())

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:  # noqa: ANN001
        asked = ("authority", "reviewer_name", "report_link", "incident_link", "asked_at", "wished_by", "text")
        if obj is not None and obj.status == QuestionStatus.OPEN:
            return [("The question", {"fields": asked}), ("Your answer", {"fields": ("answer",)})]
        return [("The question", {"fields": asked}),
                ("The answer", {"fields": ("status", "answered_by", "answered_at", "answer_readonly",
                                           "answer_stage")})]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        if obj is not None and obj.status != QuestionStatus.OPEN:
            return (*self.readonly_fields, "answer_readonly")
        return self.readonly_fields

    @admin.display(description="Answer")
    def answer_readonly(self, obj: Question) -> str:
        return obj.answer

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if obj is not None and obj.status != QuestionStatus.OPEN:
            kwargs["fields"] = ()
        return super().get_form(request, obj, change=change, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # The work list: a bare visit shows the open questions; the status filter shows the rest.
        if not request.GET and request.method == "GET":
            return HttpResponseRedirect(f"{request.path}?status__exact={QuestionStatus.OPEN}")
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # questions come from reviewers

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def save_model(self, request: HttpRequest, obj: Question, form, change: bool) -> None:  # noqa: ANN001
        if obj.status != QuestionStatus.OPEN:
            # Answered by a colleague since this page was opened: the form had no answer field to save.
            if request.POST.get("answer"):
                messages.warning(request, "This question had already been answered; your text was not sent.")
            return
        with refusal():
            saved = question_answer(actor=Actor.for_user(request.user), question=obj,
                                    answer=form.cleaned_data["answer"])
        _copy_saved(obj, saved)
        messages.info(request, "The answer goes out as a supplemental stage through the normal delivery, due by "
                               f"the end of {saved.wished_by:%Y-%m-%d} (UTC), the day the authority wished for.")


@admin.register(Acknowledgement)
class AcknowledgementAdmin(ReadOnlyAdminMixin, _AdminLinks, admin.ModelAdmin):
    """Which reports each authority has acknowledged. Written by the portal only."""

    list_display = ("acknowledged_at", "authority", "reviewer_name", "report_link", "incident_link")
    list_filter = ("reviewer__authority",)
    list_select_related = ("report__incident", "report__destination", "reviewer__authority", "reviewer__user")
    date_hierarchy = "acknowledged_at"
