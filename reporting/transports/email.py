"""The last-resort channel: the signed document as an e-mail attachment, through Django's mail settings.

Used when a destination is e-mail, or as a destination's fallback when its primary keeps failing and
the deadline is close. The message id is derived from the report id, so a re-send is recognisable.
"""
from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from reporting.choices import AttemptOutcome
from reporting.transports.base import Endpoint, FrozenReport, SendResult


class EmailTransport:
    def send(self, report: FrozenReport, endpoint: Endpoint, *, timeout_seconds: float) -> SendResult:
        identity = report.document.get("identity", {})
        # A digest has no single incident: its title ("Weekly digest 2026-W48") names it instead.
        reference = identity.get("incident_reference") or identity.get("incident_id") or identity.get("title", "")
        message_id = f"<report-{report.message_id}@{settings.MIR_REPORTING_ENTITY_NAME.replace(' ', '-').lower()}>"
        body = (
            f"{settings.MIR_REPORTING_ENTITY_NAME} submits the attached misuse incident report.\n\n"
            f"Incident: {reference}\nStage: {report.stage_name} #{report.sequence}\n"
            f"Report id: {report.message_id}\nSHA-256 of the attachment: {report.payload_sha256}\n\n"
            "The attachment is a signed JSON document; see the reporting entity's published signing keys to "
            f"verify it. Handling: {endpoint.tlp}.\nContact: {settings.MIR_REPORTING_CONTACT}\n"
        )
        message = EmailMessage(
            subject=f"[{endpoint.tlp}] Misuse incident report {reference} ({report.stage_name})",
            body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[endpoint.address],
            headers={"Message-ID": message_id, "X-MIR-Report-Id": report.message_id},
            connection=get_connection(timeout=timeout_seconds),
        )
        message.attach(f"report-{report.message_id}.json", report.payload, "application/json")
        try:
            message.send(fail_silently=False)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            return SendResult(outcome=AttemptOutcome.PERMANENT, error_class=type(exc).__name__,
                              response_excerpt=str(exc)[:2000])
        except smtplib.SMTPResponseException as exc:
            outcome = AttemptOutcome.PERMANENT if 500 <= exc.smtp_code < 600 else AttemptOutcome.TRANSIENT
            return SendResult(outcome=outcome, error_class=f"SMTP {exc.smtp_code}",
                              response_excerpt=str(exc.smtp_error)[:2000])
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            return SendResult(outcome=AttemptOutcome.TRANSIENT, error_class=type(exc).__name__,
                              response_excerpt=str(exc)[:2000])
        return SendResult(outcome=AttemptOutcome.DELIVERED,
                          receipt={"channel": "email", "message_id": message_id, "to": endpoint.address})
