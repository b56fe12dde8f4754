"""Detectors and their tokens. Created, issued and revoked through incidents.services.detectors.

A token's secret exists in clear only in the response that issues it: the page is rendered
directly (not via a redirect and a flash message, which would park the secret in the session or
a cookie) and marked no-store. Only the SHA-256 is kept, and no page shows even that.
"""
from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone

from incidents.actors import Actor
from incidents.admin.forms import DetectorAddForm, DetectorChangeForm, RevokeForm
from incidents.admin.read_only import ReadOnlyAdminMixin
from incidents.admin.secret_page import secret_once_page
from incidents.admin.service_errors import ServiceErrorsAdminMixin, refusal
from incidents.admin.workflow import apply_each, back_from_action, render_confirmation
from incidents.models import Detector, DetectorToken
from incidents.services.detectors import (
    IssuedToken,
    detector_create,
    detector_token_issue,
    detector_token_revoke,
    detector_update,
)

_ISSUED_ATTR = "_mir_issued_token"
TOKEN_FIELDS = ("prefix_display", "label", "scopes_display", "expires_at", "revoked_at", "last_used_at", "created_at")


class TokenDisplayMixin:
    @admin.display(description="Token", ordering="prefix")
    def prefix_display(self, obj: DetectorToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="Scopes")
    def scopes_display(self, obj: DetectorToken) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="Usable", boolean=True)
    def usable(self, obj: DetectorToken) -> bool:
        return obj.is_usable()


class DetectorTokenInline(TokenDisplayMixin, admin.TabularInline):
    model = DetectorToken
    fields = TOKEN_FIELDS
    readonly_fields = TOKEN_FIELDS
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "tokens (revoke them from the token list)"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(Detector)
class DetectorAdmin(ServiceErrorsAdminMixin, admin.ModelAdmin):
    list_display = ("name", "is_active", "usable_tokens", "created_at")
    search_fields = ("name",)
    # Settings change through detector_update; the name is the detector's identity in the audit trail.
    change_readonly_fields = ("name", "public_id", "created_at")
    change_editable_fields = ("description", "is_active", "rate_limit_per_minute")

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        now = timezone.now()
        unexpired = Q(tokens__expires_at__isnull=True) | Q(tokens__expires_at__gt=now)
        usable = Q(tokens__revoked_at__isnull=True) & unexpired
        return super().get_queryset(request).annotate(_usable_tokens=Count("tokens", filter=usable))

    @admin.display(description="Usable tokens", ordering="_usable_tokens")
    def usable_tokens(self, obj: Detector) -> int:
        return obj._usable_tokens

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):  # noqa: ANN001, ANN003, ANN201
        kwargs["form"] = DetectorAddForm if obj is None else DetectorChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:  # noqa: ANN001
        token = ("scopes", "expires_at", "token_label")
        if obj is None:
            return [(None, {"fields": ("name", "description")}), ("First token", {"fields": token})]
        return [
            (None, {"fields": (*self.change_readonly_fields, *self.change_editable_fields)}),
            ("Issue a new token", {"fields": ("issue_token", *token)}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        return () if obj is None else self.change_readonly_fields

    def get_inlines(self, request: HttpRequest, obj) -> list:  # noqa: ANN001
        return [] if obj is None else [DetectorTokenInline]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False  # its incidents and audit events refer to it; revoke its tokens instead

    def save_model(self, request: HttpRequest, obj: Detector, form, change: bool) -> None:  # noqa: ANN001
        actor = Actor.for_user(request.user)
        data = form.cleaned_data
        with refusal():
            if change:
                detector_update(
                    actor=actor, detector=obj, fields={name: data[name] for name in self.change_editable_fields}
                )
            if not change:
                detector = detector_create(actor=actor, name=data["name"], description=data.get("description", ""))
                for field in detector._meta.concrete_fields:
                    setattr(obj, field.attname, getattr(detector, field.attname))
                obj._state.adding = False
            if not change or data.get("issue_token"):
                issued = detector_token_issue(
                    actor=actor, detector=obj, scopes=data["scopes"], expires_at=data.get("expires_at"),
                    label=data.get("token_label", ""),
                )
                setattr(request, _ISSUED_ATTR, issued)

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        """Nothing: tokens are issued in save_model and never edited through the inline."""

    def response_add(self, request: HttpRequest, obj: Detector, post_url_continue: str | None = None) -> HttpResponse:
        issued = getattr(request, _ISSUED_ATTR, None)
        if issued is not None:
            return self.token_issued_page(request, obj, issued, created=True)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Detector) -> HttpResponse:
        issued = getattr(request, _ISSUED_ATTR, None)
        if issued is not None:
            return self.token_issued_page(request, obj, issued, created=False)
        self.message_user(request, "Saved. To issue a token, tick “Issue a new token”.", messages.SUCCESS)
        return HttpResponseRedirect(request.path)

    def token_issued_page(
        self, request: HttpRequest, obj: Detector, issued: IssuedToken, created: bool
    ) -> HttpResponse:
        return secret_once_page(self, request, obj, template="admin/incidents/detector/token_issued.html",
                                title="Token issued: copy it now", issued=issued, created=created)


def token_revoke_action(*, name: str, revoke: Callable[..., object], title: str, intro: str):  # noqa: ANN201
    """The admin action that revokes the selected bearer tokens (detector or reviewer), with a reason,
    through ``revoke(actor=, token=, reason=)``, after a confirmation page that skips revoked ones."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset) -> HttpResponse | None:  # noqa: ANN001
        form = RevokeForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            actor = Actor.for_user(request.user)
            apply_each(
                modeladmin, request, queryset, done_verb="Revoked",
                apply=lambda token: revoke(actor=actor, token=token, reason=form.cleaned_data["reason"]),
            )
            return back_from_action(modeladmin, request)
        return render_confirmation(
            modeladmin, request, queryset, action=name, title=title, intro=intro, form=form, submit_label="Revoke",
            skipped=[token for token in queryset if token.revoked_at is not None],
        )

    action.__name__ = name
    return action


revoke_tokens = admin.action(description="Revoke selected tokens…", permissions=["revoke"])(token_revoke_action(
    name="revoke_tokens", revoke=detector_token_revoke, title="Revoke detector tokens",
    intro="A revoked token stops working at once and cannot be restored; the detector needs a new token.",
))


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("usable", "Usable"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN001, ANN201
        now = timezone.now()
        if self.value() == "usable":
            return queryset.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(DetectorToken)
class DetectorTokenAdmin(ReadOnlyAdminMixin, TokenDisplayMixin, admin.ModelAdmin):
    """Tokens are issued on their detector's page and can only be revoked here; nothing else changes them."""

    list_display = ("prefix_display", "detector", "usable", *TOKEN_FIELDS[1:])
    list_filter = (TokenStateFilter, "detector", "created_at")
    list_select_related = ("detector",)
    search_fields = ("prefix", "label", "detector__name")
    fields = ("detector", *TOKEN_FIELDS, "public_id")  # never token_hash
    readonly_fields = fields
    actions = [revoke_tokens]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def render_change_form(self, request: HttpRequest, context: dict, add=False, change=False, form_url="", obj=None):  # noqa: ANN001, ANN201
        context["can_revoke"] = obj is not None and obj.revoked_at is None and self.has_revoke_permission(request)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)
