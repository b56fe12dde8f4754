"""The detector API (v1): thin views that parse, call one service, and answer after commit."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, UnsupportedMediaType
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from incidents.api import fast_intake
from incidents.api.authentication import DetectorTokenAuthentication, HasScope
from incidents.api.filing import accepted_body, incident_accept, submit
from incidents.api.idempotency import HEADER, KEY_PATTERN, claim_answer, idempotency_key_from, request_fingerprint
from incidents.api.lean_input import incident_input_lean
from incidents.api.problems import (
    PayloadTooLarge,
    ValidationProblem,
    flatten_errors,
    problem_body,
    validation_problem_from_django,
)
from incidents.api.serializers import BatchInput, BatchResult, IncidentAccepted, IncidentForDetector, IncidentInput
from incidents.api.throttling import DetectorRateThrottle
from incidents.choices import DetectorScope
from incidents.models import Detector
from incidents.selectors import incident_get_for_detector
from incidents.services.idempotency import (
    ClaimResult,
    idempotency_complete,
    idempotency_held,
    idempotency_item_lookup,
    idempotency_item_record,
    idempotency_retrying,
)

_IDEMPOTENCY_PARAM = OpenApiParameter(
    HEADER, {"type": "string", "pattern": KEY_PATTERN, "minLength": 1, "maxLength": 255}, OpenApiParameter.HEADER,
    required=True,
    description="A unique key per logical request (a UUID); retries reuse it. Kept at least 24 hours.",
)
_PROBLEM = OpenApiResponse(description="Problem details (RFC 9457), application/problem+json")
_COMMON_PROBLEMS = {code: _PROBLEM for code in (400, 401, 403, 409, 413, 415, 422, 429)}


def _incident_input(data: dict) -> dict:
    """Valid input takes the lean path; anything else goes through the serializer, which words the 400."""
    validated = incident_input_lean(data)
    if validated is None:
        serializer = IncidentInput(data=data)
        serializer.is_valid(raise_exception=True)
        validated = serializer.validated_data
    return validated


class _DetectorView(APIView):
    authentication_classes = [DetectorTokenAuthentication]
    throttle_classes = [DetectorRateThrottle]

    def initial(self, request: Request, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().initial(request, *args, **kwargs)
        if request.method == "POST" and hasattr(self, "post"):  # else DRF answers 405
            media = (request.content_type or "").split(";")[0].strip().lower()
            if media != "application/json":
                raise UnsupportedMediaType(media or "(none)", detail="send the body as application/json")
            length = request.META.get("CONTENT_LENGTH") or "0"
            if length.isdigit() and int(length) > settings.MIR_API_MAX_BODY_BYTES:
                raise PayloadTooLarge(settings.MIR_API_MAX_BODY_BYTES)

    @property
    def detector(self) -> Detector:
        return self.request.user.detector


def _object_body(request: Request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationProblem(
            "the body must be a JSON object", errors=[{"field": None, "message": "expected an object"}]
        )
    return data


class IncidentCreateView(_DetectorView):
    permission_classes = [HasScope.of(DetectorScope.SUBMIT)]

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponseBase:  # noqa: ANN002, ANN003
        # Requests that will file (or replay) an incident skip DRF's wrapping; the rest, and every
        # error, take DRF's path below (incidents/api/fast_intake.py says why that is the same answer).
        if settings.MIR_API_FAST_INTAKE:
            response = fast_intake.serve(self, request)
            if response is not None:
                return response
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        operation_id="incidents_create",
        summary="File one incident",
        parameters=[_IDEMPOTENCY_PARAM],
        request=IncidentInput,
        responses={201: IncidentAccepted, 200: IncidentAccepted, **_COMMON_PROBLEMS},
    )
    def post(self, request: Request) -> Response:
        data = _object_body(request)
        key = idempotency_key_from(request)
        validated = _incident_input(data)
        filing = incident_accept(
            detector=self.detector, key=key, fingerprint=request_fingerprint("incidents", data), validated=validated
        )
        if filing.status is None:
            return claim_answer(filing.claim)
        return Response(filing.body, status=filing.status, headers={"Location": filing.body["url"]})


class IncidentBatchView(_DetectorView):
    permission_classes = [HasScope.of(DetectorScope.SUBMIT)]

    @extend_schema(
        operation_id="incidents_batch_create",
        summary="File up to MIR_API_MAX_BATCH_ITEMS incidents; one result per item",
        parameters=[_IDEMPOTENCY_PARAM],
        request=BatchInput,
        responses={200: BatchResult, **_COMMON_PROBLEMS},
    )
    def post(self, request: Request) -> Response:
        data = _object_body(request)
        key = idempotency_key_from(request)
        envelope = BatchInput(data=data)
        envelope.is_valid(raise_exception=True)
        items = envelope.validated_data["items"]
        fingerprint = request_fingerprint("incidents/batch", data)
        return idempotency_retrying(lambda: self._batch(key, fingerprint, items))

    def _batch(self, key: str, fingerprint: str, items: list) -> Response:
        # The items commit one by one, each recording its own answer; the batch key is held meanwhile.
        with idempotency_held(detector=self.detector, key=key, fingerprint=fingerprint) as claim:
            if claim.result is not ClaimResult.CLAIMED:
                return claim_answer(claim)
            results = [self._one(f"{key}#{index}", index, item) for index, item in enumerate(items)]
            body = {
                "created": sum(1 for r in results if r["status"] == 201),
                "grouped": sum(1 for r in results if r["status"] == 200 and r["result"]["grouped"]),
                "failed": sum(1 for r in results if r["status"] >= 400),
                "items": results,
            }
            with transaction.atomic():
                idempotency_complete(claim=claim, status=200, body=body)
        return Response(body, status=status.HTTP_200_OK)

    def _one(self, item_key: str, index: int, item: object) -> dict:
        """One item in its own transaction; its result is recorded so a retried batch replays it."""
        done = idempotency_item_lookup(detector=self.detector, key=item_key)
        if done is not None:
            return {"index": index, **done.response_body}
        validated = incident_input_lean(item)
        if validated is None:
            serializer = IncidentInput(data=item)
            if not serializer.is_valid():
                errors = flatten_errors(serializer.errors)
                return {"index": index, "status": 422, "problem": _item_problem(errors)}
            validated = serializer.validated_data
        try:
            with transaction.atomic():
                code, body = accepted_body(submit(self.detector, validated))
                entry = {"status": code, "result": body}
                idempotency_item_record(
                    detector=self.detector, key=item_key, fingerprint=request_fingerprint("item", item),
                    status=code, body=entry,
                )
        except DjangoValidationError as exc:
            problem = validation_problem_from_django(exc)
            return {"index": index, "status": 422, "problem": _item_problem(problem.errors)}
        return {"index": index, **entry}


def _item_problem(errors: list[dict]) -> dict:
    detail = errors[0]["message"] if errors else "invalid"
    if errors and errors[0]["field"]:
        detail = f"{errors[0]['field']}: {detail}"
    return problem_body(slug="validation-error", title="The item is not valid", status_code=422, detail=detail,
                        errors=errors)


class IncidentDetailView(_DetectorView):
    permission_classes = [HasScope.of(DetectorScope.READ_OWN)]

    @extend_schema(
        operation_id="incidents_retrieve",
        summary="What became of an incident this detector filed",
        responses={200: IncidentForDetector, 401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM, 429: _PROBLEM},
    )
    def get(self, request: Request, public_id: str) -> Response:
        incident = incident_get_for_detector(detector=self.detector, public_id=public_id)
        if incident is None:
            raise NotFound("no incident with this id among this detector's incidents")
        return Response(IncidentForDetector(incident).data)

