from incidents.models.audit import AuditEvent
from incidents.models.detector import Detector, DetectorToken, IdempotencyKey
from incidents.models.incident import Account, Evidence, Incident, Indicator

__all__ = [
    "Account",
    "AuditEvent",
    "Detector",
    "DetectorToken",
    "Evidence",
    "IdempotencyKey",
    "Incident",
    "Indicator",
]
