"""Closed vocabularies of the outbound side."""
from django.db import models


class Transport(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (HTTPS JSON, Standard Webhooks signature)"
    TAXII = "taxii", "TAXII 2.1 collection (STIX 2.1 bundle)"
    EMAIL = "email", "E-mail (last resort)"


class Disclosure(models.TextChoices):
    """How much of an incident may leave the lab, weakest first."""

    DIGESTS = "digests", "Pseudonyms, digests and analyst summaries only"
    RAW_CONTENT = "raw_content", "Also raw evidence content (needs approval per report)"


DISCLOSURE_ORDER = [Disclosure.DIGESTS, Disclosure.RAW_CONTENT]


class ClockStart(models.TextChoices):
    DETECTED_AT = "detected_at", "Detection"
    AWARE_AT = "aware_at", "Awareness"
    DETERMINED_AT = "determined_at", "Determination (confirmed)"
    RESOLVED_AT = "resolved_at", "Resolution"
    PREVIOUS_DELIVERED = "previous_delivered", "Delivery of the previous stage"
    PERIOD_END = "period_end", "End of the digest period (digest stages only)"


class StageKind(models.TextChoices):
    INITIAL = "initial", "Initial (may be incomplete)"
    UPDATE = "update", "Update / supplemental"
    FINAL = "final", "Final"
    DIGEST = "digest", "Digest (one report per destination and period, batching incidents)"


class DigestPeriod(models.TextChoices):
    """Periods aligned in UTC: weeks start on Monday 00:00, months on the 1st at 00:00."""

    WEEKLY = "weekly", "Weekly (Monday to Monday, UTC)"
    MONTHLY = "monthly", "Monthly (calendar month, UTC)"


class DigestContent(models.TextChoices):
    LIST = "list", "List each incident (pseudonyms and digests only)"
    AGGREGATE = "aggregate", "Statistics only (no per-incident details)"


# The stage name of an answer to an authority's question (reporting.portal.services.questions): an UPDATE
# stage that no rule schedules. Reserved, so a rule's own stage can never share its rows.
ANSWER_STAGE_NAME = "answer"


class ReportStatus(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting staff approval"
    PENDING = "pending", "Pending delivery"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed permanently (escalated)"
    WITHDRAWN = "withdrawn", "Withdrawn by a person"


# A stage is open until delivered or withdrawn: FAILED is open too (a person must act, and can resend).
OPEN_REPORT_STATUSES = (ReportStatus.AWAITING_APPROVAL, ReportStatus.PENDING, ReportStatus.FAILED)


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    TRANSIENT = "transient", "Transient failure (will retry)"
    PERMANENT = "permanent", "Permanent failure"


class EscalationLevel(models.TextChoices):
    WINDOW_50 = "window_50", "50 % of the window used"
    WINDOW_75 = "window_75", "75 % of the window used"
    WINDOW_90 = "window_90", "90 % of the window used"
    OVERDUE = "overdue", "Overdue"
    PERMANENT_FAILURE = "permanent_failure", "Permanent delivery failure"
