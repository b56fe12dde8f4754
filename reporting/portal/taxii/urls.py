"""TAXII 2.1 under /taxii2/ (docs/taxii.md)."""
from django.urls import path, re_path

from reporting.portal.taxii import views

_COLLECTION = f"{views.API_ROOT}/collections/<str:collection_id>/"

urlpatterns = [
    path("", views.DiscoveryView.as_view(), name="taxii-discovery"),
    path(f"{views.API_ROOT}/", views.ApiRootView.as_view(), name="taxii-api-root"),
    path(f"{views.API_ROOT}/collections/", views.CollectionsView.as_view(), name="taxii-collections"),
    path(_COLLECTION, views.CollectionView.as_view(), name="taxii-collection"),
    path(f"{_COLLECTION}objects/", views.ObjectsView.as_view(), name="taxii-objects"),
    path(f"{_COLLECTION}manifest/", views.ManifestView.as_view(), name="taxii-manifest"),
    path(f"{_COLLECTION}objects/<str:object_id>/", views.ObjectView.as_view(), name="taxii-object"),
    path(f"{_COLLECTION}objects/<str:object_id>/versions/", views.ObjectVersionsView.as_view(),
         name="taxii-object-versions"),
    # Anything else under /taxii2/ answers as TAXII does, not with the site's HTML 404 page.
    re_path(r"^.*$", views.not_found, name="taxii-not-found"),
]
