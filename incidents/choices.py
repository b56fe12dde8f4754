"""The closed vocabularies of an incident (BRIEF.md's taxonomy and classifications)."""
from django.db import models


class Category(models.TextChoices):
    CYBER = "CYBER", "Cyber (malware, intrusion, AI-orchestrated operations)"
    CBRN = "CBRN", "CBRN weapons uplift"
    INFLUENCE = "INFLUENCE", "Covert influence operation"
    FRAUD = "FRAUD", "Fraud, scams, impersonation"
    CHILD_SAFETY = "CHILD_SAFETY", "Child safety"
    NCII = "NCII", "Non-consensual intimate imagery"
    SURVEILLANCE = "SURVEILLANCE", "Surveillance / repression tooling"
    VIOLENCE = "VIOLENCE", "Credible threats of violence"
    SAFEGUARD_EVASION = "SAFEGUARD_EVASION", "Safeguard evasion (jailbreak, prompt injection)"
    MODEL_SECURITY = "MODEL_SECURITY", "Model security (weights or key theft, extraction)"
    CONTROL_DECEPTION = "CONTROL_DECEPTION", "Model acting against the developer's controls"
    OTHER = "OTHER", "Other"


class Severity(models.TextChoices):
    SEV0 = "SEV-0", "SEV-0 catastrophic / imminent"
    SEV1 = "SEV-1", "SEV-1 critical"
    SEV2 = "SEV-2", "SEV-2 high"
    SEV3 = "SEV-3", "SEV-3 moderate"
    SEV4 = "SEV-4", "SEV-4 low / near miss"


class Status(models.TextChoices):
    NEW = "new", "New (awaiting triage)"
    TRIAGED = "triaged", "Triaged"
    CONFIRMED = "confirmed", "Confirmed"
    DISMISSED = "dismissed", "Dismissed"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


# Incidents in these statuses still take new occurrences from their detector's fingerprint.
OPEN_STATUSES = (Status.NEW, Status.TRIAGED, Status.CONFIRMED)


class Determination(models.TextChoices):
    SUSPECTED = "suspected", "Suspected"
    CONFIRMED = "confirmed", "Confirmed"
    FALSE_POSITIVE = "false_positive", "False positive"


class Reportability(models.TextChoices):
    PENDING = "pending", "Not decided"
    REPORTABLE = "reportable", "Reportable"
    NOT_REPORTABLE = "not_reportable", "Not reportable"


class DetectionSource(models.TextChoices):
    DETECTOR = "detector", "Automated detector"
    STAFF = "staff", "Staff"
    EXTERNAL_TIP = "external_tip", "External tip"


class TimePrecision(models.TextChoices):
    EXACT = "exact", "Exact"
    MINUTE = "minute", "To the minute"
    HOUR = "hour", "To the hour"
    DAY = "day", "To the day"
    UNKNOWN = "unknown", "Unknown"


class Surface(models.TextChoices):
    API = "api", "API"
    CONSUMER_APP = "consumer_app", "Consumer app"
    AGENT = "agent", "Agent"
    FINE_TUNING = "fine_tuning", "Fine-tuning"
    OTHER = "other", "Other"


class ActorType(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    INDIVIDUAL = "individual", "Individual"
    CRIMINAL = "criminal", "Criminal group"
    STATE_AFFILIATED = "state_affiliated", "State-affiliated"
    COMMERCIAL = "commercial", "Commercial"


class Confidence(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Tlp(models.TextChoices):
    CLEAR = "TLP:CLEAR", "TLP:CLEAR"
    GREEN = "TLP:GREEN", "TLP:GREEN"
    AMBER = "TLP:AMBER", "TLP:AMBER"
    AMBER_STRICT = "TLP:AMBER+STRICT", "TLP:AMBER+STRICT"
    RED = "TLP:RED", "TLP:RED"


class EnforcementAction(models.TextChoices):
    NONE = "none", "None"
    WARNED = "warned", "Warned"
    RATE_LIMITED = "rate_limited", "Rate limited"
    SUSPENDED = "suspended", "Suspended"
    BANNED = "banned", "Banned"


class EvidenceKind(models.TextChoices):
    PROMPT = "prompt", "Prompt"
    OUTPUT = "output", "Model output"
    FILE = "file", "File"
    LOG = "log", "Log excerpt"
    SCREENSHOT = "screenshot", "Screenshot"
    OTHER = "other", "Other"


class IndicatorType(models.TextChoices):
    DOMAIN = "domain", "Domain name"
    IP = "ip", "IP address"
    URL = "url", "URL"
    EMAIL = "email", "E-mail address"
    WALLET = "wallet", "Cryptocurrency wallet"
    FILE_HASH = "file_hash", "File hash"
    PROMPT_PATTERN_HASH = "prompt_pattern_hash", "Prompt-pattern hash (SHA-256)"


class ActorKind(models.TextChoices):
    USER = "user", "Staff user"
    DETECTOR = "detector", "Detector"
    SYSTEM = "system", "System"


class DetectorScope(models.TextChoices):
    SUBMIT = "incidents:submit", "Submit incidents"
    READ_OWN = "incidents:read", "Read own incidents"
