"""System checks for rules the service depends on (``manage.py check`` runs them)."""
from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.compatibility)
def check_time_zone(app_configs, **kwargs):  # noqa: ANN001, ANN201  (Django's check signature)
    errors = []
    if not settings.USE_TZ:
        errors.append(
            Error("USE_TZ must be True: every deadline is a timezone-aware UTC instant.", id="reporting.E001")
        )
    if settings.TIME_ZONE != "UTC":
        errors.append(Error("TIME_ZONE must be 'UTC' so stored and logged times agree.", id="reporting.E002"))
    return errors
