from django.http import HttpRequest
from django.template.response import TemplateResponse
from django_otp.admin import OTPAdminSite

from reporting.admin_login import StaffLoginForm


class StaffAdminSite(OTPAdminSite):
    """The staff console. Logging in takes a password and a second-factor code (django-otp): a session
    that was not verified by a device is treated as not staff, whatever ``is_staff`` says."""

    site_header = "Misuse incident reporting"
    site_title = "Misuse incident reporting"
    index_title = "Staff console"
    # The incident list needs its ten columns on one screen; the app list is one click away (Home).
    enable_nav_sidebar = False
    login_form = StaffLoginForm
    login_template = "admin/staff_login.html"

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite defaults to "otpadmin"; every `admin:` URL name in the project expects "admin".
        super().__init__(name)

    def get_urls(self) -> list:
        from django.urls import path

        from reporting.admin.compliance import compliance_view

        return [path("compliance/", self.admin_view(compliance_view), name="compliance"), *super().get_urls()]

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff only, and never a reviewer: a reviewer account made staff by mistake still stays out."""
        if not super().has_permission(request):
            return False
        # Asked several times per page: remember the answer on the request.
        if not hasattr(request, "_mir_is_reviewer"):
            from reporting.portal.models import Reviewer

            request._mir_is_reviewer = Reviewer.objects.filter(user_id=request.user.pk).exists()
        return not request._mir_is_reviewer

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
