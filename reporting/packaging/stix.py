"""The report document as a STIX 2.1 bundle, for the TAXII transport (mapping table: docs/stix-mapping.md).

The bundle is a function of the document, the message id and the TLP floor only: no clock, no random
ids. A retry therefore re-sends byte-identical objects, and a receiver (or a TAXII server) that keys
on (id, modified) sees a duplicate, never a new object. Ids are UUIDv5 from a fixed namespace; STIX
prefers v4 for SDOs ("SHOULD"), but only derived ids make "same report, same objects" hold.

Two kinds of object, two versioning rules:
- catalogue objects (the lab's identity, ATLAS / ATT&CK attack patterns) never change for a given
  id, carry a fixed timestamp and are marked TLP:CLEAR, because they hold nothing but public names;
  the same object can then appear under any TLP without two versions of it disagreeing;
- incident objects (incident, indicators, relationships) keep their id across stages and take the
  stage's time as ``modified``, so each stage is a new version of the same incident; the note and
  the report are per stage (ids from the message id). All of them carry the report's TLP.

Lab-specific content rides in our own property extension (MIR_EXTENSION), so the bundle validates with
custom content refused. Its extension-definition object is published (docs/stix-mapping.md,
``mir_extension_definition``) but not sent: medallion, the OASIS reference server, reads its top-level
``version`` property as the TAXII object version and then fails every read of the collection.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from datetime import UTC, datetime

import stix2

# Fixed forever: changing it would change every id ever sent.
STIX_NAMESPACE = uuid.UUID("d79e8a36-99a3-44f6-a2cb-97aae8da78c1")
# The timestamp of catalogue objects; bump it together with MIR_EXTENSION_VERSION when their content changes.
CATALOGUE_TIME = "2025-01-01T00:00:00.000Z"
MIR_EXTENSION_VERSION = "1.0.0"
MIR_EXTENSION = "extension-definition--8219df06-0939-5e80-932c-91b56bfc40a6"  # fixed forever, like the namespace
INCIDENT_CORE_EXTENSION = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
# The official TLP 2.0 marking definitions (oasis-open/cti-stix-common-objects, tlp-2.0), weakest first.
TLP_MARKINGS = {
    "TLP:CLEAR": ("marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487", "clear"),
    "TLP:GREEN": ("marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb", "green"),
    "TLP:AMBER": ("marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", "amber"),
    "TLP:AMBER+STRICT": ("marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003", "amber+strict"),
    "TLP:RED": ("marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", "red"),
}
TLP_ORDER = list(TLP_MARKINGS)
TLP_MARKING_CREATED = "2022-10-01T00:00:00.000Z"
DEFAULT_TLP = "TLP:AMBER+STRICT"

# What this module reads from the document (urn:mir:report:v1, reporting.packaging.document; the signed
# envelope {"document", "signature"} is unwrapped first). Everything is read with .get(): a missing key
# leaves a property out, it never fails the mapping; only identity.incident_id and one usable time are
# required. Every other top-level section that is a JSON object is carried, compacted, in the
# incident's MIR extension, and the frozen payload itself on the report.
DOCUMENT_KEYS = {
    "schema": "the document's schema id, repeated on the report",
    "generated_at": "the stage's time: modified/published of its objects (else the latest clock)",
    "identity": ["incident_id", "incident_reference", "report_id", "stage", "stage_kind", "sequence", "title",
                 "summary", "reporting_entity {name, contact}"],
    "clocks": ["occurred.start", "detected_at", "aware_at", "determined_at", "resolved_at",
               "detection {source, detector {name}, score, threshold}"],
    "classification": ["category", "severity", "determination", "near_miss"],
    "activity": ["techniques [id]", "indicators [{type, value, pseudonymized, techniques?}]"],
    "impact": ["affected_parties [{category, count}]"],
    "response": ["actions_taken", "recommendation", "unknowns {fields, notes}"],
    "handling": ["tlp"],
}

_ATLAS_RE = re.compile(r"^AML\.T\d{4}(\.\d{3})?$")
_ATTACK_RE = re.compile(r"^T\d{4}(\.\d{3})?$")
_HASH_KEYS = {32: "MD5", 40: "'SHA-1'", 64: "'SHA-256'", 128: "'SHA-512'"}
_CRITICALITY = {"SEV-0": 95, "SEV-1": 70, "SEV-2": 40, "SEV-3": 15, "SEV-4": 5}  # Appendix A, "5 qualitative"
_DETECTION_METHODS = {"detector": "automated-tool", "staff": "human-review", "external_tip": "external-tip"}
_INDICATOR_NAMES = {
    "domain": "Domain", "ip": "IP address", "url": "URL", "email": "E-mail address",
    "wallet": "Cryptocurrency wallet", "file_hash": "File hash", "prompt_pattern_hash": "Prompt-pattern hash",
}


def bundle_for(document: dict, *, message_id: str, tlp_floor: str | None = None, payload: bytes | None = None) -> dict:
    """The STIX 2.1 bundle of one report stage. Raises ValueError when the document cannot be mapped.

    ``document``: the report document, or the signed envelope around it. ``tlp_floor`` (the destination's
    TLP) can only tighten the document's marking. ``payload``: the frozen bytes as submitted, carried on
    the report with their SHA-256, so a TAXII reader can verify the Ed25519 signature too.
    """
    envelope = document if isinstance(document, dict) else {}
    doc = envelope["document"] if isinstance(envelope.get("document"), dict) else envelope
    if doc.get("schema") == "urn:mir:digest:v1":
        from reporting.packaging.stix_digest import digest_bundle_for  # it builds on this module's helpers

        return digest_bundle_for(doc, message_id=message_id, tlp_floor=tlp_floor, payload=payload)
    ident, clocks, cls, activity = (_section(doc, name) for name in ("identity", "clocks", "classification",
                                                                     "activity"))
    incident_uuid = _text(ident.get("incident_id"))
    if not incident_uuid:
        raise ValueError("the document has no identity.incident_id")
    stage_time = _timestamp(doc.get("generated_at")) or _timestamp(ident.get("generated_at")) or _latest_clock(clocks)
    if stage_time is None:
        raise ValueError("the document carries no usable time (generated_at or a clock)")
    # created is the same in every version of the incident: detection, else the earliest clock known.
    first = _timestamp(clocks.get("detected_at")) or _earliest_clock(clocks)
    incident_created = min(first, stage_time) if first else stage_time
    tlp = _effective_tlp(_section(doc, "handling").get("tlp"), tlp_floor)
    marks, clear = [TLP_MARKINGS[tlp][0]], [TLP_MARKINGS["TLP:CLEAR"][0]]

    entity_name, contact = _entity(ident)
    lab = {"type": "identity", "spec_version": "2.1", "id": _id("identity", entity_name),
           "created": CATALOGUE_TIME, "modified": CATALOGUE_TIME, "name": entity_name,
           "identity_class": "organization", "object_marking_refs": clear}
    common = {"spec_version": "2.1", "created_by_ref": lab["id"]}
    versioned = {**common, "created": incident_created, "modified": stage_time, "object_marking_refs": marks}

    patterns = {tech: _attack_pattern(tech, clear) for tech in _list(activity.get("techniques"))
                if isinstance(tech, str) and (_ATLAS_RE.match(tech) or _ATTACK_RE.match(tech))}
    incident_id = _id("incident", incident_uuid)
    indicators, relationships = [], []
    valid_from = _timestamp(_occurred_start(clocks)) or incident_created
    for item in _list(activity.get("indicators")):
        indicator = _indicator(item, incident_uuid, valid_from, versioned)
        if indicator is None or indicator["id"] in {i["id"] for i in indicators}:
            continue  # unmappable types stay in the incident extension (activity.indicators), not lost
        indicators.append(indicator)
        relationships.append(_relationship(indicator["id"], "related-to", incident_id, versioned))
        for tech in dict.fromkeys(t for t in _list(item.get("techniques")) if isinstance(t, str)):
            if tech in patterns:  # "indicates" only where the document pairs them; never a cross product
                relationships.append(_relationship(indicator["id"], "indicates", patterns[tech]["id"], versioned))
    relationships += [_relationship(incident_id, "related-to", p["id"], versioned) for p in patterns.values()]

    reference = _text(ident.get("incident_reference") or ident.get("reference")) or incident_uuid
    title = _text(ident.get("title")) or reference
    summary = _text(ident.get("summary"))
    incident = {"type": "incident", "id": incident_id, **versioned, "name": f"{reference}: {title}",
                "external_references": [{"source_name": "mir", "external_id": reference}],
                "extensions": {INCIDENT_CORE_EXTENSION: _incident_core(doc, cls, clocks),
                               MIR_EXTENSION: _incident_mir(doc, incident_uuid, reference)}}
    if summary:
        incident["description"] = summary

    stage_label = _stage_label(ident)
    stage_objects = {**common, "created": stage_time, "modified": stage_time, "object_marking_refs": marks}
    note = {"type": "note", "id": _id("note", message_id), **stage_objects,
            "abstract": f"{reference} {stage_label}: analyst notes",
            "content": _note_content(doc, title, summary, contact), "authors": [entity_name],
            "object_refs": [incident_id]}
    body = [lab, *patterns.values(), *indicators, incident, *relationships, note]
    report_ext = _compact({"extension_type": "property-extension", "message_id": message_id,
                           "document_schema": _text(doc.get("schema")), "identity": ident,
                           "reporting_entity": {"name": entity_name, "contact": contact}})
    if payload is not None:
        try:
            report_ext["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the frozen payload is not UTF-8") from None
        report_ext["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    report = {"type": "report", "id": _id("report", message_id), **stage_objects,
              "name": f"{reference} {stage_label}: {title}", "published": stage_time,
              "report_types": ["threat-report"], "object_refs": [obj["id"] for obj in body],
              "extensions": {MIR_EXTENSION: report_ext}}
    if summary:
        report["description"] = summary
    markings = [tlp_marking_definition(level) for level in sorted({"TLP:CLEAR", tlp}, key=TLP_ORDER.index)]
    return {"type": "bundle", "id": _id("bundle", message_id), "objects": [*markings, *body, report]}


def validate_bundle(bundle: dict) -> None:
    """Strict STIX 2.1 validation (no custom properties allowed) plus: every reference resolves in the bundle."""
    try:
        stix2.parse(bundle, allow_custom=False, version="2.1")
    except (stix2.exceptions.STIXError, ValueError, TypeError) as exc:
        raise ValueError(f"not valid STIX 2.1: {exc}") from exc
    ids = {obj["id"] for obj in bundle["objects"]}
    for obj in bundle["objects"]:
        for ref in _references(obj):
            if ref not in ids:
                raise ValueError(f"{obj['id']} refers to {ref}, which is not in the bundle")


def tlp_marking_definition(tlp: str) -> dict:
    """The official TLP 2.0 marking-definition object, exactly as OASIS publishes it."""
    marking_id, level = TLP_MARKINGS[tlp]
    return {"type": "marking-definition", "spec_version": "2.1", "id": marking_id,
            "created": TLP_MARKING_CREATED, "name": tlp,
            "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}}}


def mir_extension_definition(created_by_ref: str) -> dict:
    """Our extension's definition object, for publication (created_by_ref: the publishing lab's identity)."""
    return {
        "type": "extension-definition", "spec_version": "2.1", "id": MIR_EXTENSION,
        "created_by_ref": created_by_ref, "created": CATALOGUE_TIME, "modified": CATALOGUE_TIME,
        "name": "MIR misuse incident report", "version": MIR_EXTENSION_VERSION,
        "description": "The AI-misuse incident report of the lab, as submitted to an authority.",
        "schema": "Plain text: on an incident, incident_id, reference and every top-level section of the report "
                  "document but identity (clocks, classification, ai_system, actor, activity, impact, response, "
                  "handling, ...) as JSON objects, empty values left out; on a report, message_id, the document's "
                  "identity section, reporting_entity {name, contact} and payload_sha256 (SHA-256 of the signed "
                  "canonical JSON document).",
        "extension_types": ["property-extension"],
        "object_marking_refs": [TLP_MARKINGS["TLP:CLEAR"][0]],
    }


def indicator_pattern(indicator_type: str, value: str) -> str | None:
    """A STIX pattern for one indicator, or None for a type or value that has none."""
    literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if indicator_type == "ip":
        try:
            version = ipaddress.ip_address(value).version
        except ValueError:
            return None
        return f"[ipv{version}-addr:value = {literal}]"
    if indicator_type == "file_hash":
        key = _HASH_KEYS.get(len(value))
        return f"[file:hashes.{key} = {literal}]" if key and re.fullmatch(r"[0-9a-fA-F]+", value) else None
    simple = {
        "domain": "domain-name:value", "url": "url:value", "email": "email-addr:value",
        # No STIX 2.1 object for these two: OpenCTI's cryptocurrency-wallet type, and our own prompt-pattern
        # type (a SHA-256 of the lab's normalised prompt, meaningful only against this lab's reports).
        "wallet": "cryptocurrency-wallet:value", "prompt_pattern_hash": "x-mir-prompt-pattern:hashes.'SHA-256'",
    }
    path = simple.get(indicator_type)
    return f"[{path} = {literal}]" if path else None


# --- objects ----------------------------------------------------------------------------------------

def _attack_pattern(technique: str, clear: list[str]) -> dict:
    if technique.startswith("AML."):
        reference = {"source_name": "mitre-atlas", "external_id": technique,
                     "url": f"https://atlas.mitre.org/techniques/{technique}"}
    else:
        reference = {"source_name": "mitre-attack", "external_id": technique,
                     "url": f"https://attack.mitre.org/techniques/{technique.replace('.', '/')}/"}
    # No created_by_ref: it is a catalogue entry, the same object for every lab; the lab's claim that
    # the technique was used lives in the relationship, under the report's TLP.
    return {"type": "attack-pattern", "spec_version": "2.1", "id": _id("attack-pattern", technique),
            "created": CATALOGUE_TIME, "modified": CATALOGUE_TIME, "name": technique,
            "external_references": [reference], "object_marking_refs": clear}


def _indicator(item: object, incident_uuid: str, valid_from: str, versioned: dict) -> dict | None:
    if not isinstance(item, dict) or item.get("pseudonymized") is True:
        return None  # a pseudonym stands for an account, it is not an observable anyone could match
    kind, value = _text(item.get("type")), _text(item.get("value"))
    pattern = indicator_pattern(kind, value) if kind and value else None
    if pattern is None:
        return None
    return {"type": "indicator", "id": _id("indicator", incident_uuid, kind, value), **versioned,
            "name": f"{_INDICATOR_NAMES.get(kind, kind)} {value}", "indicator_types": ["malicious-activity"],
            "pattern": pattern, "pattern_type": "stix", "pattern_version": "2.1", "valid_from": valid_from,
            "labels": [f"mir-{kind.replace('_', '-')}"]}


def _relationship(source: str, kind: str, target: str, versioned: dict) -> dict:
    return {"type": "relationship", "id": _id("relationship", source, kind, target), **versioned,
            "relationship_type": kind, "source_ref": source, "target_ref": target}


def _incident_core(doc: dict, cls: dict, clocks: dict) -> dict:
    """The OASIS incident core extension (v2.0): its determination enum and criticality scale."""
    determination = {"suspected": "suspected", "false_positive": "false-positive"}.get(
        _text(cls.get("determination")), "suspected")
    if cls.get("determination") == "confirmed":
        determination = "blocked" if cls.get("near_miss") is True else "successful-attempt"
    resolved = _timestamp(clocks.get("resolved_at")) or _section(doc, "identity").get("stage_kind") == "final"
    core = {"extension_type": "property-extension", "determination": determination,
            "investigation_status": "closed" if resolved else "open"}
    severity = _text(cls.get("severity"))
    if severity in _CRITICALITY:
        core["criticality"] = 0 if determination == "false-positive" else _CRITICALITY[severity]
    category = _text(cls.get("category"))
    types = ([f"ai-misuse-{category.lower().replace('_', '-')}"] if category else []) + (
        ["major"] if severity in ("SEV-0", "SEV-1") else [])
    if types:
        core["incident_types"] = types
    detection = clocks.get("detection") if isinstance(clocks.get("detection"), dict) else clocks
    source = _text(detection.get("source") or detection.get("detection_source"))
    detector = detection.get("detector")
    detector = _text(detector.get("name") if isinstance(detector, dict) else detector or detection.get("detector_name"))
    methods = [m for m in (_DETECTION_METHODS.get(source, source), detector) if m]
    if methods:
        core["detection_methods"] = methods
    score = detection.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        threshold = detection.get("threshold")
        entry = {"name": f"{detector or 'detector'} score", "value": score}
        if isinstance(threshold, int | float) and not isinstance(threshold, bool):
            entry["description"] = f"threshold {threshold}"
        core["scores"] = [entry]
    counts: dict[str, int] = {}
    for party in _list(_section(doc, "impact").get("affected_parties")):
        if isinstance(party, dict) and isinstance(party.get("count"), int) and party["count"] >= 0:
            key = re.sub(r"[^a-z]+", "-", str(party.get("category") or "").lower()).strip("-")
            if key:
                counts[key] = counts.get(key, 0) + party["count"]
    if counts:
        core["impacted_entity_counts"] = counts
    return core


def _incident_mir(doc: dict, incident_uuid: str, reference: str) -> dict:
    sections = {key: value for key, value in doc.items() if key != "identity" and isinstance(value, dict)}
    return {"extension_type": "property-extension", "incident_id": incident_uuid, "reference": reference,
            **(_compact(sections) or {})}


def _note_content(doc: dict, title: str, summary: str, contact: str) -> str:
    response = _section(doc, "response")
    parts = [title, summary]
    reply = _section(doc, "reply")  # an answer stage: the authority's question and the lab's answer first
    if _text(reply.get("question")) and _text(reply.get("answer")):
        parts += [f"Question (report {_text(reply.get('in_reply_to'))}): {_text(reply.get('question'))}",
                  f"Answer: {_text(reply.get('answer'))}"]
    for label, key in (("Actions taken", "actions_taken"), ("Recommendation", "recommendation")):
        if _text(response.get(key)):
            parts.append(f"{label}: {_text(response.get(key))}")
    unknowns = response.get("unknowns")
    if isinstance(unknowns, dict):  # {"fields": [document paths], "notes": text}
        fields = ", ".join(f for f in _list(unknowns.get("fields")) if isinstance(f, str))
        unknowns = "; ".join(text for text in (_text(unknowns.get("notes")), fields) if text)
    if _text(unknowns):
        parts.append(f"Still unknown: {_text(unknowns)}")
    if contact:
        parts.append(f"Contact (24/7): {contact}")
    return "\n\n".join(part for part in parts if part)


# --- reading the document ---------------------------------------------------------------------------

def _section(doc: dict, name: str) -> dict:
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _entity(ident: dict) -> tuple[str, str]:
    entity = ident.get("reporting_entity")
    if isinstance(entity, dict):
        name, contact = _text(entity.get("name")), _text(entity.get("contact") or entity.get("contact_point"))
    else:
        name, contact = _text(entity), ""
    if not name:
        from django.conf import settings  # only when the document lacks it; the module is otherwise pure

        name = settings.MIR_REPORTING_ENTITY_NAME
    return name, contact or _text(ident.get("contact_point"))


def _stage_label(ident: dict) -> str:
    stage = _text(ident.get("stage") or ident.get("stage_name") or ident.get("stage_kind")) or "report"
    sequence = ident.get("sequence")
    return f"{stage} #{sequence}" if isinstance(sequence, int) and not isinstance(sequence, bool) else stage


def _effective_tlp(document_tlp: object, floor: str | None) -> str:
    # Absent: the government default. Present but unknown (a typo in a row): TLP:RED, never looser.
    levels = [_tlp_name(value) or "TLP:RED" for value in (document_tlp, floor) if value] or [DEFAULT_TLP]
    return max(levels, key=TLP_ORDER.index)


def _tlp_name(value: object) -> str | None:
    name = _text(value).upper()
    if name and not name.startswith("TLP:"):
        name = f"TLP:{name}"
    name = "TLP:CLEAR" if name == "TLP:WHITE" else name  # TLP 1.0 spelling of the same level
    return name if name in TLP_MARKINGS else None


def _timestamp(value: object) -> str | None:
    """A STIX timestamp (UTC, millisecond precision) from an RFC 3339 string or datetime; None if unusable."""
    if isinstance(value, str) and value.strip():
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _occurred_start(clocks: dict) -> object:
    return _section(clocks, "occurred").get("start") or clocks.get("occurred_start")


def _clock_times(clocks: dict) -> list[str]:
    keys = ("detected_at", "aware_at", "determined_at", "resolved_at")
    times = (_timestamp(value) for value in (_occurred_start(clocks), *(clocks.get(key) for key in keys)))
    return [t for t in times if t]  # one fixed format, so text order is time order


def _latest_clock(clocks: dict) -> str | None:
    return max(_clock_times(clocks), default=None)


def _earliest_clock(clocks: dict) -> str | None:
    return min(_clock_times(clocks), default=None)


def _compact(value: object) -> object:
    """JSON without nulls or empty values (STIX forbids them), keys made STIX-safe."""
    if isinstance(value, dict):
        items = {re.sub(r"[^a-z0-9_]", "_", str(k).lower())[:250]: _compact(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None} or None
    if isinstance(value, list):
        return [c for c in (_compact(v) for v in value) if c is not None] or None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool | int | float):
        return value
    return None


def _id(object_type: str, *parts: str) -> str:
    return f"{object_type}--{uuid.uuid5(STIX_NAMESPACE, '|'.join((object_type, *parts)))}"


def _references(obj: dict) -> list[str]:
    refs: list[str] = []
    for key, value in obj.items():
        if key.endswith("_ref") and isinstance(value, str):
            refs.append(value)
        elif key.endswith("_refs") and isinstance(value, list):
            refs.extend(v for v in value if isinstance(v, str))
    return refs
