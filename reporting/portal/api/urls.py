"""The reviewer API under /api/v1/reviewer/ (docs/api.md, "Reviewer API")."""
from django.urls import path

from reporting.portal.api import views

urlpatterns = [
    path("reports/", views.ReviewerReportListView.as_view(), name="reviewer-api-reports"),
    path("reports/<uuid:public_id>/", views.ReviewerReportDetailView.as_view(), name="reviewer-api-report"),
    path("reports/<uuid:public_id>/document", views.ReviewerReportDocumentView.as_view(),
         name="reviewer-api-report-document"),
    path("reports/<uuid:public_id>/stix", views.ReviewerReportStixView.as_view(), name="reviewer-api-report-stix"),
]
