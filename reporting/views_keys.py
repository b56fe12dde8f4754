"""What the service publishes for verifiers: the document-signing keys (to check a report's Ed25519
signature) and the audit chain's current head (a checkpoint of the lab's tamper-evident audit trail)."""
from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from reporting.packaging.document import audit_checkpoint
from reporting.signing import published_keys


@require_GET
def signing_keys(request: HttpRequest) -> JsonResponse:
    """Public, no login: the keys are public by design. Retired keys stay listed so old reports verify.

    A short max-age lets a rotation reach verifiers within minutes; a verifier that meets an unknown
    key_id should fetch again rather than trust its cache.
    """
    response = JsonResponse({"keys": published_keys()})
    patch_cache_control(response, public=True, max_age=300)
    # Browser-based verifiers (an authority's own tooling) may fetch it from another origin.
    response["Access-Control-Allow-Origin"] = "*"
    return response


@require_GET
def audit_head(request: HttpRequest) -> JsonResponse:
    """Public, no login: the current sealed head of the audit chain, ``{"audit_chain_head": {seq, hash,
    sealed_at}}`` (null before anything is sealed), the same object every report carries.

    Anyone may record it as a checkpoint; `manage.py audit_verify --checkpoint SEQ:HASH` later proves the
    chain still contains it. Cached briefly only: the sealer moves the head every few seconds.
    """
    response = JsonResponse({"audit_chain_head": audit_checkpoint()})
    patch_cache_control(response, public=True, max_age=10)
    response["Access-Control-Allow-Origin"] = "*"
    return response
