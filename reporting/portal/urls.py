"""The portal's URLs (namespace ``portal``); docs/portal.md lists them for the access-matrix test."""
from django.urls import path

from reporting.portal import views, views_auth, views_qa

app_name = "portal"

urlpatterns = [
    path("", views.report_list, name="report-list"),
    path("login/", views_auth.login_view, name="login"),
    path("login/code/", views_auth.login_code_view, name="login-code"),
    path("logout/", views_auth.logout_view, name="logout"),
    path("reports/<uuid:public_id>/", views.report_detail, name="report-detail"),
    path("reports/<uuid:public_id>/document.json", views.report_document, name="report-document"),
    path("reports/<uuid:public_id>/stix.json", views.report_stix, name="report-stix"),
    path("reports/<uuid:public_id>/acknowledge/", views_qa.report_acknowledge_view, name="report-acknowledge"),
    path("reports/<uuid:public_id>/questions/", views_qa.report_ask_view, name="report-ask"),
]
