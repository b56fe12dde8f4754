from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from incidents.api.problems import problem_404_for_api
from reporting.health import healthz
from reporting.views_keys import audit_head, signing_keys

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/reviewer/", include("reporting.portal.api.urls")),
    path("api/v1/", include("incidents.api.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("portal/", include("reporting.portal.urls")),
    path("taxii2/", include("reporting.portal.taxii.urls")),
    path("healthz", healthz, name="healthz"),
    path(".well-known/mir-signing-keys.json", signing_keys, name="signing-keys"),
    path(".well-known/mir-audit-head.json", audit_head, name="audit-head"),
]

handler404 = problem_404_for_api
