"""Reviewer API tokens in the staff admin: issued (secret shown once), revoked, never edited.

Issue and revoke go through reporting.portal.services.tokens; like detector tokens, the secret exists in
clear only in the no-store response that issues it.
"""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from incidents.actors import Actor
from incidents.admin.detectors import TokenDisplayMixin, TokenStateFilter, token_revoke_action
from incidents.admin.secret_page import secret_once_page
from incidents.admin.service_errors import ServiceErrorsAdminMixin, ServiceErrorsForm, refusal
from reporting.portal.models import Reviewer, ReviewerToken
from reporting.portal.services.tokens import MAX_LIFETIME, reviewer_token_issue, reviewer_token_revoke

_ISSUED_ATTR = "_mir_reviewer_token_issued"
TOKEN_FIELDS = ("prefix_display", "label", "scopes_display", "expires_at", "revoked_at", "last_used_at", "created_at")


class ReviewerTokenAddForm(ServiceErrorsForm):
    expires_in_days = forms.IntegerField(min_value=1, max_value=MAX_LIFETIME.days, initial=90,
                                         label="Expires in (days)")

    class Meta:
        model = ReviewerToken
        fields = ("reviewer", "label")

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["reviewer"].queryset = Reviewer.objects.filter(is_active=True).select_related("user", "authority")


revoke_reviewer_tokens = admin.action(description="Revoke selected reviewer tokens…")(token_revoke_action(
    name="revoke_reviewer_tokens", revoke=reviewer_token_revoke, title="Revoke reviewer tokens",
    intro="A revoked token stops working at once (API and TAXII) and cannot be restored.",
))


@admin.register(ReviewerToken)
class ReviewerTokenAdmin(ServiceErrorsAdminMixin, TokenDisplayMixin, admin.ModelAdmin):
    list_display = ("prefix_display", "reviewer", "authority", "usable", *TOKEN_FIELDS[1:])
    list_filter = (TokenStateFilter, "reviewer__authority", "created_at")
    list_select_related = ("reviewer__user", "reviewer__authority")
    search_fields = ("prefix", "label", "reviewer__user__username", "reviewer__authority__name")
    view_fields = ("reviewer", *TOKEN_FIELDS, "public_id")  # never token_hash
    actions = [revoke_reviewer_tokens]

    @admin.display(description="Authority", ordering="reviewer__authority__name")
    def authority(self, obj: ReviewerToken) -> str:
        return obj.reviewer.authority.name

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if obj is None:
            kwargs["form"] = ReviewerTokenAddForm
            kwargs["fields"] = ("reviewer", "label", "expires_in_days")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        return ("reviewer", "label", "expires_in_days") if obj is None else self.view_fields

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        return () if obj is None else self.view_fields

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False  # a token is issued or revoked, never edited

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False  # the access log names the token; revoke instead

    def save_model(self, request: HttpRequest, obj: ReviewerToken, form, change: bool) -> None:  # noqa: ANN001
        data = form.cleaned_data
        with refusal():
            issued = reviewer_token_issue(
                actor=Actor.for_user(request.user), reviewer=data["reviewer"], label=data.get("label", ""),
                expires_at=timezone.now() + timedelta(days=data["expires_in_days"]),
            )
        setattr(request, _ISSUED_ATTR, issued)
        for field in issued.token._meta.concrete_fields:
            setattr(obj, field.attname, getattr(issued.token, field.attname))
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        """Nothing: the token row was written by reviewer_token_issue."""

    def response_add(
        self, request: HttpRequest, obj: ReviewerToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued = getattr(request, _ISSUED_ATTR, None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        return secret_once_page(self, request, issued.token, template="admin/portal/reviewertoken/token_issued.html",
                                title="Reviewer token issued: copy it now", issued=issued)
