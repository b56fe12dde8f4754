from reporting.models.destination import Destination
from reporting.models.receipt import Receipt
from reporting.models.report import DeliveryAttempt, DigestEntry, Escalation, Report
from reporting.models.rules import ReportingRule, RuleStage
from reporting.models.signing import SigningKey

__all__ = ["DeliveryAttempt", "Destination", "DigestEntry", "Escalation", "Receipt", "Report", "ReportingRule",
           "RuleStage", "SigningKey"]
