"""Turning a service's ValidationError into form errors instead of a 500.

The admin's forms run the same pure checks the services run, so a valid form nearly always saves.
A service can still refuse after the forms validated: it re-reads the locked row (another person
changed it meanwhile) or enforces a rule a form cannot see. Then the admin's transaction must roll
back *and* the staff member must get their form back with the reason on it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django import forms
from django.contrib.admin.utils import construct_change_message
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse

_REQUEST_ATTR = "_mir_service_errors"


class ServiceRefused(Exception):  # noqa: N818  (a signal between save_model and changeform_view)
    def __init__(self, error: ValidationError, label: str = "") -> None:
        super().__init__(str(error))
        self.error = error
        self.label = label


@contextmanager
def refusal(label: str = "") -> Iterator[None]:
    """Inside save_model/save_related: a service's ValidationError aborts the save (see the mixin)."""
    try:
        yield
    except ValidationError as exc:
        raise ServiceRefused(exc, label) from exc


def add_validation_error(form: forms.Form, error: ValidationError, label: str = "") -> None:
    """Put each message on the field it names, or at the top of the form when the form lacks the field."""
    prefix = f"{label}: " if label else ""
    if not hasattr(error, "error_dict"):
        form.add_error(None, [f"{prefix}{message}" for message in error.messages])
        return
    for name, errors in error.error_dict.items():
        messages = [message for item in errors for message in item.messages]
        if name in form.fields and not label:
            form.add_error(name, messages)
        elif name == NON_FIELD_ERRORS:
            form.add_error(None, [f"{prefix}{message}" for message in messages])
        else:
            form.add_error(None, [f"{prefix}{name}: {message}" for message in messages])


class ServiceErrorsForm(forms.ModelForm):
    """Base form of admins whose writes go through services (see ServiceErrorsAdminMixin)."""

    service_error: ServiceRefused | None = None

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.service_error is not None:
            add_validation_error(self, self.service_error.error, self.service_error.label)
        return cleaned


class ServiceErrorsAdminMixin:
    """Re-render a refused save as an invalid form.

    changeform_view runs in ``transaction.atomic``; ServiceRefused leaving it rolls back everything
    the save had written. The view then runs once more on the same POST with the refusal attached to
    the form class, so validation fails with the service's message and nothing is saved.
    """

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as refused:
            setattr(request, _REQUEST_ATTR, refused)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs) -> type[forms.ModelForm]:  # noqa: ANN001, ANN003
        form = super().get_form(request, obj, change=change, **kwargs)
        refused = getattr(request, _REQUEST_ATTR, None)
        if refused is not None:
            form = type(form.__name__, (form,), {"service_error": refused})
        return form

    def construct_change_message(self, request: HttpRequest, form: forms.ModelForm, formsets: list, add: bool = False):  # noqa: ANN201
        # The inline formsets were never .save()d (their rows went through services), so Django's
        # default, which reads formset.new_objects, cannot run. The audit trail is the record of
        # parts; leaving them out here also keeps account identifiers out of the admin's log table.
        return construct_change_message(form, [], add)
