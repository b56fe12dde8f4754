"""The published document-signing keys: what any receiver needs to verify a report's Ed25519 signature."""
from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

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
