from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ReportingConfig(AppConfig):
    default = True
    name = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        from reporting import checks  # noqa: F401  (registers the system checks)


class StaffAdminConfig(admin_apps.AdminConfig):
    """The staff admin, with a site that shows the triage queue on its index page."""

    default = False
    default_site = "reporting.admin_site.StaffAdminSite"
