from incidents.models.audit import AuditChainHead, AuditEvent
from incidents.models.detector import Detector, DetectorToken, IdempotencyKey
from incidents.models.incident import Account, Evidence, Incident, Indicator

__all__ = [
    "Account",
    "AuditChainHead",
    "AuditEvent",
    "Detector",
    "DetectorToken",
    "Evidence",
    "IdempotencyKey",
    "Incident",
    "Indicator",
]
