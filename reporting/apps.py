from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ReportingConfig(AppConfig):
    default = True
    name = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        from incidents.hooks import register_incident_hook
        from reporting import checks  # noqa: F401  (registers the system checks)
        from reporting.services.obligations import on_incident_change

        # The one seam from intake to obligations (docs/architecture.md): explicit, not a signal.
        register_incident_hook(on_incident_change)
        _unregister_otp_admin()


def _unregister_otp_admin() -> None:
    """django-otp registers its device models in the admin; here a device is made only by the audited
    ``staff_otp_enrol`` and its key must never be shown again, so those pages are removed."""
    from django.contrib import admin
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    for model in (TOTPDevice, StaticDevice):
        if admin.site.is_registered(model):
            admin.site.unregister(model)


class StaffAdminConfig(admin_apps.AdminConfig):
    """The staff admin, with a site that shows the triage queue on its index page."""

    default = False
    default_site = "reporting.admin_site.StaffAdminSite"
