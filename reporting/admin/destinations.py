"""Destinations: created through destination_create, changed through destination_update, never deleted.

Secrets are write-only. A generated webhook secret exists in clear only in the one response that
shows it (rendered directly, not via a redirect and a flash message that would park it in the
session, and marked no-store), like detector tokens. The pseudonym key is never shown at all.
"""
from __future__ import annotations

import base64
import secrets

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html_join

from incidents.actors import Actor
from incidents.admin.secret_page import secret_once_page
from incidents.admin.service_errors import ServiceErrorsAdminMixin, refusal
from reporting.admin.forms import DestinationAddForm, DestinationChangeForm
from reporting.models import Destination
from reporting.services.admin_changes import degraded_open_reports, destination_update
from reporting.services.destinations import destination_create

_GENERATED_ATTR = "_mir_generated_secret"
SECRET_FIELDS = ("secret", "generate_secret")
CHANGE_EDITABLE = ("authority", "address", "username", "max_disclosure", "tlp", "accepts_child_safety", "fallback",
                   "is_active")


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@admin.register(Destination)
class DestinationAdmin(ServiceErrorsAdminMixin, admin.ModelAdmin):
    # Codes rather than the long choice labels, so a row stays one line.
    list_display = ("name", "authority", "transport_code", "address", "disclosure_code", "tlp", "accepts_child_safety",
                    "fallback_name", "is_active")
    list_filter = ("transport", "is_active", "max_disclosure", "accepts_child_safety")
    list_select_related = ("fallback", "authority")
    search_fields = ("name", "authority__name", "address")
    change_readonly_fields = ("name", "transport", "secret_state", "pseudonym_key_state", "rules_list", "public_id",
                              "created_at", "updated_at")

    @admin.display(description="Transport", ordering="transport")
    def transport_code(self, obj: Destination) -> str:
        return obj.transport

    @admin.display(description="Max disclosure", ordering="max_disclosure")
    def disclosure_code(self, obj: Destination) -> str:
        return obj.max_disclosure

    @admin.display(description="Fallback", ordering="fallback__name")
    def fallback_name(self, obj: Destination) -> str:
        return obj.fallback.name if obj.fallback_id else "—"

    @admin.display(description="Secret")
    def secret_state(self, obj: Destination) -> str:
        # Whether one is set, never any part of it.
        return "set (never shown)" if obj.secret_encrypted else "not set"

    @admin.display(description="Pseudonym key")
    def pseudonym_key_state(self, obj: Destination) -> str:
        return "set (per destination, never shown or exported)" if obj.pseudonym_key_encrypted else "missing"

    @admin.display(description="Rules")
    def rules_list(self, obj: Destination):  # noqa: ANN201
        rules = list(obj.rules.order_by("name"))
        if not rules:
            return "none: this destination is owed nothing until a rule names it"
        return format_html_join(
            ", ", '<a href="{}">{}</a>{}',
            ((reverse(f"{self.admin_site.name}:reporting_reportingrule_change", args=[rule.pk]), rule.name,
              "" if rule.is_active else " (inactive)") for rule in rules),
        )

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):  # noqa: ANN001, ANN003, ANN201
        kwargs["form"] = DestinationAddForm if obj is None else DestinationChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:  # noqa: ANN001
        receives = ("What it may receive", {"fields": ("max_disclosure", "tlp", "accepts_child_safety")})
        if obj is None:
            return [
                (None, {"fields": ("name", "authority", "transport", "address", "username")}),
                ("Secret (write-only)", {"fields": SECRET_FIELDS}),
                receives,
                ("Fallback", {"fields": ("fallback",)}),
            ]
        return [
            (None, {"fields": ("name", "transport", "authority", "address", "username", "is_active")}),
            ("Secret (write-only)", {"fields": ("secret_state", *SECRET_FIELDS, "pseudonym_key_state")}),
            receives,
            ("Fallback", {"fields": ("fallback",)}),
            ("Rules", {"fields": ("rules_list",)}),
            ("Record", {"classes": ("collapse",), "fields": ("public_id", "created_at", "updated_at")}),
            ("Audit note", {"fields": ("change_reason",)}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:  # noqa: ANN001
        return () if obj is None else self.change_readonly_fields

    # Reports and audit events refer to a destination; deactivate it instead.
    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def save_model(self, request: HttpRequest, obj: Destination, form, change: bool) -> None:  # noqa: ANN001
        actor = Actor.for_user(request.user)
        data = form.cleaned_data
        secret = new_webhook_secret() if data.get("generate_secret") else data.get("secret", "")
        with refusal():
            if change:
                fields = {name: data[name] for name in CHANGE_EDITABLE if name in form.changed_data}
                destination = destination_update(
                    destination=obj, actor=actor, fields=fields, secret=secret or None,
                    reason=data.get("change_reason", ""),
                )
            else:
                destination = destination_create(
                    actor=actor, secret=secret,
                    **{name: data[name] for name in ("name", "authority", "transport", "address", "username",
                                                      "max_disclosure", "tlp", "accepts_child_safety", "fallback")},
                )
        # Make the admin's instance the saved row, for its redirect and log entry.
        for field in destination._meta.concrete_fields:
            setattr(obj, field.attname, getattr(destination, field.attname))
        obj._state.adding = False
        if data.get("generate_secret"):
            setattr(request, _GENERATED_ATTR, secret)
        degraded = degraded_open_reports(destination) if "max_disclosure" in form.changed_data else 0
        if degraded:
            self.message_user(request, f"{degraded} open report(s) approved with raw content will now be sent "
                              "with digests only (the lower of approval and destination applies).", messages.WARNING)

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        """Nothing: a destination has no related rows edited here."""

    def response_add(
        self, request: HttpRequest, obj: Destination, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, _GENERATED_ATTR, None)
        if secret is not None:
            return self.secret_page(request, obj, secret, created=True)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Destination) -> HttpResponse:
        secret = getattr(request, _GENERATED_ATTR, None)
        if secret is not None:
            return self.secret_page(request, obj, secret, created=False)
        return super().response_change(request, obj)

    def secret_page(self, request: HttpRequest, obj: Destination, secret: str, created: bool) -> HttpResponse:
        return secret_once_page(
            self, request, obj, template="admin/reporting/destination/secret_issued.html",
            title="Webhook secret generated: copy it now", secret=secret, created=created,
        )
