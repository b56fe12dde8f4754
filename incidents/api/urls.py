from django.urls import path

from incidents.api.views import IncidentBatchView, IncidentCreateView, IncidentDetailView

urlpatterns = [
    path("incidents/", IncidentCreateView.as_view(), name="api-incidents-create"),
    path("incidents/batch", IncidentBatchView.as_view(), name="api-incidents-batch"),
    path("incidents/<str:public_id>", IncidentDetailView.as_view(), name="api-incidents-detail"),
]
