from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse


class StaffAdminSite(admin.AdminSite):
    site_header = "Misuse incident reporting"
    site_title = "Misuse incident reporting"
    index_title = "Staff console"
    # The incident list needs its ten columns on one screen; the app list is one click away (Home).
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        from incidents.selectors import incident_triage_queue_count

        context = {"triage_count": incident_triage_queue_count(), **(extra_context or {})}
        return super().index(request, extra_context=context)
