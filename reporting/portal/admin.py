"""Staff admin of the reviewers' side: authorities, reviewer accounts (secret shown once), the access log.

Writes go through reporting.portal.services; the access log is read-only here.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.password_validation import password_validators_help_text_html
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from incidents.actors import Actor
from incidents.admin.read_only import ReadOnlyAdminMixin
from incidents.admin.secret_page import secret_once_page
from incidents.admin.service_errors import ServiceErrorsAdminMixin, ServiceErrorsForm, refusal
from reporting.portal.models import Authority, Reviewer, ReviewerAccess
from reporting.portal.services.authorities import authority_create, authority_rename
from reporting.portal.services.reviewers import (
    reviewer_create,
    reviewer_is_locked,
    reviewer_set_active,
    reviewer_unlock,
)

_ISSUED_ATTR = "_mir_reviewer_issued"


def _copy_saved(obj, saved) -> None:  # noqa: ANN001
    """Make the admin's instance the row the service saved, for its redirect and log entry."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False


class AuthorityForm(ServiceErrorsForm):
    class Meta:
        model = Authority
        fields = ("name",)


@admin.register(Authority)
class AuthorityAdmin(ServiceErrorsAdminMixin, admin.ModelAdmin):
    form = AuthorityForm
    list_display = ("name", "slug", "public_id")
    search_fields = ("name", "slug")
    readonly_fields = ("slug", "public_id", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False  # destinations, reviewers and the audit trail refer to it

    def save_model(self, request: HttpRequest, obj: Authority, form, change: bool) -> None:  # noqa: ANN001
        actor = Actor.for_user(request.user)
        with refusal():
            if change:
                saved = authority_rename(actor=actor, authority=obj, name=form.cleaned_data["name"])
            else:
                saved = authority_create(actor=actor, name=form.cleaned_data["name"])
        _copy_saved(obj, saved)


class ReviewerAddForm(ServiceErrorsForm):
    username = forms.CharField(max_length=150)
    email = forms.EmailField()
    password1 = forms.CharField(label="Password", strip=False, help_text=password_validators_help_text_html(),
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(label="Password again", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    class Meta:
        model = Reviewer
        fields = ("authority",)

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class ReviewerChangeForm(ServiceErrorsForm):
    change_reason = forms.CharField(required=False, max_length=5000, label="Reason for this change",
                                    widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = Reviewer
        fields = ("is_active",)


@admin.register(Reviewer)
class ReviewerAdmin(ServiceErrorsAdminMixin, admin.ModelAdmin):
    list_display = ("username", "authority", "is_active", "locked", "failed_login_count", "last_login_at")
    list_filter = ("authority", "is_active")
    list_select_related = ("user", "authority")
    search_fields = ("user__username", "user__email", "authority__name")
    actions = ("unlock_selected",)
    change_readonly = ("username", "email", "authority", "failed_login_count", "locked_until", "last_login_at",
                       "public_id", "created_at")

    @admin.display(description="Username", ordering="user__username")
    def username(self, obj: Reviewer) -> str:
        return obj.user.get_username()

    @admin.display(description="E-mail")
    def email(self, obj: Reviewer) -> str:
        return obj.user.email

    @admin.display(description="Locked", boolean=True)
    def locked(self, obj: Reviewer) -> bool:
        return reviewer_is_locked(obj)

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):  # noqa: ANN001, ANN003, ANN201
        kwargs["form"] = ReviewerAddForm if obj is None else ReviewerChangeForm
        kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:  # noqa: ANN001
        if obj is None:
            return [(None, {"fields": ("username", "email", "authority", "password1", "password2")})]
        return [(None, {"fields": ("username", "email", "authority", "is_active")}),
                ("Sign-in", {"fields": ("failed_login_count", "locked_until", "last_login_at")}),
                ("Record", {"fields": ("public_id", "created_at")}),
                ("Audit note", {"fields": ("change_reason",)})]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        return () if obj is None else self.change_readonly

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False  # deactivate instead: the access log and audit trail name the reviewer

    def save_model(self, request: HttpRequest, obj: Reviewer, form, change: bool) -> None:  # noqa: ANN001
        actor = Actor.for_user(request.user)
        data = form.cleaned_data
        with refusal():
            if change:
                saved = reviewer_set_active(actor=actor, reviewer=obj, is_active=data["is_active"],
                                            reason=data.get("change_reason", ""))
            else:
                issued = reviewer_create(actor=actor, username=data["username"], email=data["email"],
                                         authority=data["authority"], password=data["password1"])
                setattr(request, _ISSUED_ATTR, issued)
                saved = issued.reviewer
        _copy_saved(obj, saved)

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        """Nothing: the user and the TOTP device were made by reviewer_create."""

    def response_add(self, request: HttpRequest, obj: Reviewer, post_url_continue: str | None = None) -> HttpResponse:
        issued = getattr(request, _ISSUED_ATTR, None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        return secret_once_page(
            self, request, issued.reviewer, template="admin/portal/reviewer/secret_issued.html",
            title="Reviewer created: give them their authenticator secret now",
            otpauth_uri=issued.otpauth_uri, secret=issued.secret_base32,
        )

    @admin.action(description="Unlock selected reviewers (lift a sign-in lockout now)")
    def unlock_selected(self, request: HttpRequest, queryset: QuerySet[Reviewer]) -> None:
        actor = Actor.for_user(request.user)
        count = 0
        for reviewer in queryset:
            if reviewer.locked_until is not None or reviewer.failed_login_count:
                reviewer_unlock(actor=actor, reviewer=reviewer, reason="unlocked in the admin")
                count += 1
        self.message_user(request, f"{count} reviewer(s) unlocked.", messages.SUCCESS)


@admin.register(ReviewerAccess)
class ReviewerAccessAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What each authority's reviewers have looked at. Written by the portal only; nobody edits it."""

    list_display = ("at", "reviewer_name", "authority", "channel", "action", "report_link", "ip", "query")
    list_filter = ("channel", "action", "reviewer__authority", "at")
    list_select_related = ("reviewer__user", "reviewer__authority", "report")
    search_fields = ("reviewer__user__username", "report__public_id", "report__sent_reference", "ip")
    date_hierarchy = "at"

    @admin.display(description="Reviewer", ordering="reviewer__user__username")
    def reviewer_name(self, obj: ReviewerAccess) -> str:
        return obj.reviewer.user.get_username()

    @admin.display(description="Authority", ordering="reviewer__authority__name")
    def authority(self, obj: ReviewerAccess) -> str:
        return obj.reviewer.authority.name

    @admin.display(description="Report")
    def report_link(self, obj: ReviewerAccess) -> str:
        if obj.report_id is None:
            return "—"
        url = reverse(f"{self.admin_site.name}:reporting_report_change", args=[obj.report_id])
        return format_html('<a href="{}">{} {}#{}</a>', url, obj.report.sent_reference, obj.report.stage_name,
                           obj.report.sequence)


# Reviewer tokens, questions and acknowledgements register their admins from their own modules.
from reporting.portal import admin_qa, admin_tokens  # noqa: E402, F401
