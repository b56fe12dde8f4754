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
        from reporting.selectors import escalations_unacknowledged_count, reports_due_within, reports_overdue_count

        context = {
            "triage_count": incident_triage_queue_count(),
            # The clocks at risk: each count links to the board (or escalation list) filtered to it.
            "due_soon_count": reports_due_within(24).count(),
            "overdue_count": reports_overdue_count(),
            "unacknowledged_count": escalations_unacknowledged_count(),
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)
