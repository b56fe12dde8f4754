"""TAXII 2.1 read interface for authorities' own tools (docs/taxii.md).

/taxii2/ (discovery) → one API root (/taxii2/reports/) → one collection per authority, whose id is the
authority's public id. A token sees its authority's collection only; any other collection id is a 404,
the same answer as an id that does not exist. Objects come from reporting.portal.taxii.collection, which
reads through the portal's scope selector. Every read is logged in the reviewer access log.
"""
from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reporting.portal.api.authentication import CanReadReports, ReviewerRateThrottle, TaxiiTokenAuthentication
from reporting.portal.models import AccessAction, AccessChannel, Reviewer
from reporting.portal.services.access import reviewer_access_record, reviewer_access_record_many
from reporting.portal.signin import client_ip
from reporting.portal.taxii import query as q
from reporting.portal.taxii.collection import Entry, collection_entries, entry_objects
from reporting.portal.taxii.errors import TAXII_MEDIA_TYPE, TaxiiError, taxii_error_body, taxii_exception_handler
from reporting.portal.taxii.timestamps import format_timestamp

API_ROOT = "reports"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"


class TaxiiRenderer(JSONRenderer):
    media_type = "application/taxii+json"
    format = "taxii"


class TaxiiNegotiation(BaseContentNegotiation):
    """Accept must allow TAXII 2.1 JSON: no header, */*, application/*, or application/taxii+json with no
    version or version=2.1. Anything else is a 406 (TAXII 2.1, section 1.6.8)."""

    def select_parser(self, request: Request, parsers: list):  # noqa: ANN201
        return None

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        header = request.META.get("HTTP_ACCEPT", "").strip()
        if not header or any(_acceptable(item) for item in header.split(",")):
            return renderers[0], TAXII_MEDIA_TYPE
        raise NotAcceptable(f"this server answers {TAXII_MEDIA_TYPE} only")


def _acceptable(item: str) -> bool:
    media, *params = [part.strip().lower() for part in item.split(";")]
    params = {key.strip(): value.strip() for key, _, value in (p.partition("=") for p in params) if key != "q"}
    if media in ("*/*", "application/*"):
        return True
    return media == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def _taxii_response(data: dict, *, status: int = 200, entries: list[Entry] | None = None) -> Response:
    response = Response(data, status=status, content_type=TAXII_MEDIA_TYPE)
    if entries:
        response["X-TAXII-Date-Added-First"] = format_timestamp(entries[0].date_added)
        response["X-TAXII-Date-Added-Last"] = format_timestamp(entries[-1].date_added)
    return response


class _TaxiiView(APIView):
    authentication_classes = [TaxiiTokenAuthentication]
    permission_classes = [CanReadReports]
    throttle_classes = [ReviewerRateThrottle]
    renderer_classes = [TaxiiRenderer]
    content_negotiation_class = TaxiiNegotiation
    # Read-only: the collections say can_write false, and any write method is a 405.
    http_method_names = ["get", "head"]
    schema = None  # TAXII 2.1 is specified by OASIS (docs/taxii.md), not in our OpenAPI document

    def get_exception_handler(self):  # noqa: ANN201
        return taxii_exception_handler

    @property
    def reviewer(self) -> Reviewer:
        return self.request.user.reviewer

    def _log_directory(self) -> None:
        principal = self.request.user
        reviewer_access_record(reviewer=principal.reviewer, action=AccessAction.TAXII_DIRECTORY,
                               ip=client_ip(self.request), query=self.request.get_full_path()[:500],
                               channel=AccessChannel.TAXII, token=principal.token)

    def _log_entries(self, action: AccessAction, entries: list[Entry]) -> None:
        principal = self.request.user
        reports = list({entry.report.pk: entry.report for entry in entries}.values())
        reviewer_access_record_many(reviewer=principal.reviewer, action=action, ip=client_ip(self.request),
                                    reports=reports, query=self.request.get_full_path()[:500],
                                    channel=AccessChannel.TAXII, token=principal.token)

    def _check_collection(self, collection_id: str) -> None:
        try:
            wanted = UUID(collection_id)
        except ValueError:
            wanted = None
        if wanted != self.reviewer.authority.public_id:
            raise TaxiiError(404, "Not found", "no such collection, or not one this token can read")


def _root_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(f"/taxii2/{API_ROOT}/")


def _collection(reviewer: Reviewer) -> dict:
    authority = reviewer.authority
    return {"id": str(authority.public_id), "title": f"Misuse incident reports delivered to {authority.name}",
            "description": "STIX 2.1 bundles of the reports delivered to this authority, as submitted (signed "
                           "payload on each report object). date_added is the delivery time.",
            "can_read": True, "can_write": False, "media_types": [STIX_MEDIA_TYPE]}


class DiscoveryView(_TaxiiView):
    def get(self, request: Request) -> Response:
        self._log_directory()
        root = _root_url(request)
        return _taxii_response({"title": "Misuse incident reports (read-only)",
                                "description": "Reports delivered to your authority, as STIX 2.1. See docs/taxii.md.",
                                "default": root, "api_roots": [root]})


class ApiRootView(_TaxiiView):
    def get(self, request: Request) -> Response:
        self._log_directory()
        return _taxii_response({"title": "Misuse incident reports", "versions": [TAXII_MEDIA_TYPE],
                                "max_content_length": 0,  # nothing can be posted here
                                "description": "One read-only collection per authority."})


class CollectionsView(_TaxiiView):
    def get(self, request: Request) -> Response:
        self._log_directory()
        return _taxii_response({"collections": [_collection(self.reviewer)]})


class CollectionView(_TaxiiView):
    def get(self, request: Request, collection_id: str) -> Response:
        self._check_collection(collection_id)
        self._log_directory()
        return _taxii_response(_collection(self.reviewer))


class ObjectsView(_TaxiiView):
    def get(self, request: Request, collection_id: str) -> Response:
        self._check_collection(collection_id)
        query = q.parse_query(request.query_params, allowed=q.OBJECTS_PARAMS)
        page = q.paginate(q.select(collection_entries(reviewer=self.reviewer), query), query)
        self._log_entries(AccessAction.TAXII_OBJECTS, page.entries)
        return _taxii_response(_envelope(self.reviewer, page), entries=page.entries)


class ManifestView(_TaxiiView):
    def get(self, request: Request, collection_id: str) -> Response:
        self._check_collection(collection_id)
        query = q.parse_query(request.query_params, allowed=q.OBJECTS_PARAMS)
        page = q.paginate(q.select(collection_entries(reviewer=self.reviewer), query), query)
        self._log_entries(AccessAction.TAXII_MANIFEST, page.entries)
        body: dict = {"more": page.more}
        if page.next:
            body["next"] = page.next
        if page.entries:
            body["objects"] = [{"id": entry.object_id, "date_added": format_timestamp(entry.date_added),
                                "version": entry.version, "media_type": STIX_MEDIA_TYPE} for entry in page.entries]
        return _taxii_response(body, entries=page.entries)


class ObjectView(_TaxiiView):
    def get(self, request: Request, collection_id: str, object_id: str) -> Response:
        self._check_collection(collection_id)
        entries = self._versions_of(object_id)
        query = q.parse_query(request.query_params, allowed=q.OBJECT_PARAMS)
        page = q.paginate(q.select(entries, query), query)
        self._log_entries(AccessAction.TAXII_OBJECTS, page.entries)
        return _taxii_response(_envelope(self.reviewer, page), entries=page.entries)

    def _versions_of(self, object_id: str) -> list[Entry]:
        if not q.is_stix_id(object_id):
            raise TaxiiError(400, "Bad object id", f"{object_id[:100]!r} is not a STIX id (type--uuid)")
        entries = [entry for entry in collection_entries(reviewer=self.reviewer) if entry.object_id == object_id]
        if not entries:
            raise TaxiiError(404, "Not found", "no object with this id in the collection")
        return entries


class ObjectVersionsView(ObjectView):
    def get(self, request: Request, collection_id: str, object_id: str) -> Response:
        self._check_collection(collection_id)
        entries = self._versions_of(object_id)
        query = q.parse_query(request.query_params, allowed=q.VERSIONS_PARAMS, default_versions=("all",))
        page = q.paginate(q.select(entries, query), query)
        self._log_entries(AccessAction.TAXII_MANIFEST, page.entries)
        body: dict = {"more": page.more}
        if page.next:
            body["next"] = page.next
        if page.entries:
            body["versions"] = [entry.version for entry in page.entries]
        return _taxii_response(body, entries=page.entries)


def _envelope(reviewer: Reviewer, page: q.Page) -> dict:
    body: dict = {"more": page.more}
    if page.next:
        body["next"] = page.next
    if page.entries:
        body["objects"] = entry_objects(reviewer=reviewer, entries=page.entries)
    return body




def not_found(request: HttpRequest) -> JsonResponse:
    body = taxii_error_body(404, "Not found", "no such TAXII resource (discovery is at /taxii2/)")
    return JsonResponse(body, status=404, content_type=TAXII_MEDIA_TYPE)
