"""Output shapes of the reviewer API. Everything comes from the frozen report (sent_* columns, payload)."""
from __future__ import annotations

from rest_framework import serializers

from reporting.models import Report


class ReportSummary(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField(source="sent_reference")
    title = serializers.CharField(source="sent_title")
    category = serializers.CharField(source="sent_category")
    severity = serializers.CharField(source="sent_severity")
    destination = serializers.CharField(source="destination.name")
    stage = serializers.CharField(source="stage_name")
    stage_kind = serializers.CharField()
    sequence = serializers.IntegerField()
    delivered_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField(allow_null=True)
    late = serializers.BooleanField()
    sha256 = serializers.CharField(source="payload_sha256", help_text="SHA-256 of the document bytes as sent")
    url = serializers.SerializerMethodField()

    def get_url(self, report: Report) -> str:
        return f"/api/v1/reviewer/reports/{report.public_id}/"


class SignatureResult(serializers.Serializer):
    state = serializers.ChoiceField(choices=["valid", "invalid", "unknown_key"])
    key_id = serializers.CharField()
    message = serializers.CharField()
    digest_matches = serializers.BooleanField(help_text="the stored bytes still hash to `sha256`")


class Attempt(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    outcome = serializers.CharField()
    http_status = serializers.IntegerField(allow_null=True)
    error_class = serializers.CharField()
    via_fallback = serializers.BooleanField()


class ReportDetail(ReportSummary):
    late_reason = serializers.CharField()
    signing_key_id = serializers.CharField()
    signature = SignatureResult(source="signature_check")
    attempts = Attempt(many=True, source="attempt_list")
    receipt = serializers.JSONField(allow_null=True)
    other_stages = ReportSummary(many=True, source="other_stage_list")
    document_url = serializers.SerializerMethodField()
    stix_url = serializers.SerializerMethodField()

    def get_document_url(self, report: Report) -> str:
        return f"/api/v1/reviewer/reports/{report.public_id}/document"

    def get_stix_url(self, report: Report) -> str:
        return f"/api/v1/reviewer/reports/{report.public_id}/stix"


class ReportPage(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="URL of the next (older) page, or null")
    previous = serializers.CharField(allow_null=True)
    results = ReportSummary(many=True)
