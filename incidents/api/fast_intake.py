"""POST /api/v1/incidents/ without DRF's request and response machinery, for requests that will succeed.

DRF wraps every request (``Request``, content negotiation, authentication, permission and throttle
classes, ``Response``, the renderer): on the intake path that was about a tenth of the app's CPU
(docs/performance.md, "Intake"). ``serve`` answers the common case, a well-formed request that files
an incident or replays a stored answer, with plain Django; it returns ``None`` for anything else, and
``IncidentCreateView`` then runs the DRF path, which words every error exactly as before. So this
module never words an error, and the public contract (status, body bytes, headers) is DRF's:
tests/incidents/test_fast_intake.py sends the same requests with this path on and off and compares.

Order matters for the hand-over. Everything up to authentication is pure. Authentication may record
the token's last use, and the throttle counts the request: both results are left on the Django
request (``PRINCIPAL_ATTR``, ``DECISION_ATTR``) and the DRF path reuses them instead of doing either a
second time. After the claim, a request is handed over only if the key was not ours to act on (in
flight, key reused with another body) or the service refused the input (rolled back, nothing stored):
the DRF path then claims again and reaches the same answer, or a later one if the other request
finished meanwhile.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from incidents.api.authentication import PRINCIPAL_ATTR, bearer_secret, principal_for
from incidents.api.filing import incident_accept
from incidents.api.idempotency import REPLAY_HEADER, request_fingerprint, valid_key
from incidents.api.lean_input import incident_input_lean
from incidents.api.parsing import parse_json_body
from incidents.api.throttling import DECISION_ATTR, detector_window, window_count
from incidents.choices import DetectorScope
from incidents.services.idempotency import ClaimResult

# What DRF's parser and the view accept as-is; other spellings (parameters, other charsets) go to DRF.
_CONTENT_TYPES = frozenset({"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"})
# Accept values for which DRF's negotiation picks the JSON renderer without parameters (no indent).
_ACCEPTS = frozenset({None, "*/*", "application/json", "application/*"})
_SUBMIT = DetectorScope.SUBMIT.value
_render = JSONRenderer().render


def _body_if_plain(request: HttpRequest) -> bytes | None:
    """The body of a POST the DRF path would read and answer in JSON as it is; None otherwise."""
    meta = request.META
    if (
        request.method != "POST"
        or meta.get("QUERY_STRING")  # ?format= would change DRF's renderer choice
        or meta.get("HTTP_ACCEPT") not in _ACCEPTS
        or meta.get("CONTENT_TYPE", "").lower() not in _CONTENT_TYPES
    ):
        return None
    length = meta.get("CONTENT_LENGTH") or ""
    cap = settings.MIR_API_MAX_BODY_BYTES
    if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
        cap = min(cap, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if not length.isdigit() or not 0 < int(length) <= cap:
        return None
    # request.body keeps the bytes, so the DRF path can still read them after a hand-over.
    return request.body


def _response(view: APIView, data: dict, status: int, headers: dict[str, str]) -> HttpResponse:
    """What DRF's Response with ``data``, ``status`` and ``headers`` becomes after rendering and
    ``finalize_response``: the JSON renderer's bytes, its content type, then the view's own headers."""
    response = HttpResponse(_render(data), status=status, content_type=JSONRenderer.media_type)
    for name, value in headers.items():
        response[name] = value
    view_headers = view.default_response_headers
    vary = view_headers.pop("Vary", None)
    if vary is not None:
        patch_vary_headers(response, [v.strip() for v in vary.split(",")])
    for name, value in view_headers.items():
        response[name] = value
    return response


def serve(view: APIView, request: HttpRequest) -> HttpResponse | None:
    """The answer to a request that files an incident or replays one; None: let the DRF path answer."""
    body = _body_if_plain(request)
    if body is None:
        return None
    raw_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    key = valid_key(raw_key) if raw_key is not None else None
    secret = bearer_secret(request)
    if key is None or secret is None:
        return None
    try:
        data = parse_json_body(body)
    except ParseError:
        return None
    validated = incident_input_lean(data) if isinstance(data, dict) else None
    if validated is None:
        return None
    # Side effects from here on; their results stay on the request for the DRF path (docstring).
    principal = principal_for(secret)
    if principal is None:
        return None
    setattr(request, PRINCIPAL_ATTR, principal)
    request.user = principal  # as DRF sets it, for anything after the view that looks
    if not principal.token.has_scope(_SUBMIT):
        return None
    decision = window_count(*detector_window(principal))
    setattr(request, DECISION_ATTR, decision)
    if decision.wait is not None:
        return None
    try:
        filing = incident_accept(detector=principal.detector, key=key,
                                 fingerprint=request_fingerprint("incidents", data), validated=validated)
    except DjangoValidationError:
        return None  # rolled back, nothing stored; the DRF path files it again and words the 422
    if filing.status is not None:
        return _response(view, filing.body, filing.status, {"Location": filing.body["url"]})
    if filing.claim.result is ClaimResult.REPLAY:
        record = filing.claim.record
        return _response(view, record.response_body, record.response_status, {REPLAY_HEADER: "true"})
    return None  # in flight or key reused with another body: the DRF path words the 409 or 422
