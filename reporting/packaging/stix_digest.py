"""A digest document (``urn:mir:digest:v1``) as a STIX 2.1 bundle (docs/stix-mapping.md, "Digests").

One ``report`` object per digest (id from the message id, so a retry re-sends identical objects) that
references a ``note`` with the period's statistics and, for a listing digest, one ``incident`` per
listed incident. The incident ids are the ones the per-incident bundles use (UUIDv5 of the incident
id), so an authority can join a digest line to the incident's own reports; each is a version as of
the digest (``modified`` = the digest's time) carrying only what the digest lists, in our extension.
"""
from __future__ import annotations

import hashlib
import json

from reporting.packaging.stix import (
    CATALOGUE_TIME,
    MIR_EXTENSION,
    TLP_MARKINGS,
    TLP_ORDER,
    _compact,
    _effective_tlp,
    _entity,
    _id,
    _list,
    _section,
    _text,
    _timestamp,
    tlp_marking_definition,
)


def digest_bundle_for(doc: dict, *, message_id: str, tlp_floor: str | None = None,
                      payload: bytes | None = None) -> dict:
    ident, period = _section(doc, "identity"), _section(doc, "period")
    stage_time = _timestamp(doc.get("generated_at")) or _timestamp(period.get("end"))
    if stage_time is None:
        raise ValueError("the digest carries no usable time (generated_at or period.end)")
    tlp = _effective_tlp(_section(doc, "handling").get("tlp"), tlp_floor)
    marks, clear = [TLP_MARKINGS[tlp][0]], [TLP_MARKINGS["TLP:CLEAR"][0]]
    entity_name, contact = _entity(ident)
    lab = {"type": "identity", "spec_version": "2.1", "id": _id("identity", entity_name),
           "created": CATALOGUE_TIME, "modified": CATALOGUE_TIME, "name": entity_name,
           "identity_class": "organization", "object_marking_refs": clear}
    common = {"spec_version": "2.1", "created_by_ref": lab["id"], "object_marking_refs": marks}
    title = _text(ident.get("title")) or "Digest"

    incidents = []
    for item in _list(doc.get("incidents")):
        if not isinstance(item, dict) or not _text(item.get("incident_id")):
            continue
        reference = _text(item.get("incident_reference")) or _text(item.get("incident_id"))
        created = _timestamp(item.get("detected_at")) or stage_time
        incident = {"type": "incident", "id": _id("incident", _text(item["incident_id"])), **common,
                    "created": min(created, stage_time), "modified": stage_time,
                    "name": f"{reference}: {_text(item.get('title')) or reference}",
                    "external_references": [{"source_name": "mir", "external_id": reference}],
                    "extensions": {MIR_EXTENSION: {"extension_type": "property-extension",
                                                   **(_compact({k: v for k, v in item.items()
                                                                if k not in ("title", "summary")}) or {})}}}
        if _text(item.get("summary")):
            incident["description"] = _text(item["summary"])
        incidents.append(incident)

    stats = doc.get("statistics") if isinstance(doc.get("statistics"), dict) else {}
    stage_objects = {**common, "created": stage_time, "modified": stage_time}
    lines = [title, f"Period: {_text(period.get('start'))} to {_text(period.get('end'))} (UTC)",
             "Nothing to report." if doc.get("nothing_to_report") else "",
             f"Statistics: {json.dumps(stats, sort_keys=True)}", f"Contact (24/7): {contact}" if contact else ""]
    note = {"type": "note", "id": _id("note", message_id), **stage_objects, "abstract": f"{title}: statistics",
            "content": "\n\n".join(line for line in lines if line), "authors": [entity_name],
            "object_refs": [lab["id"]]}
    report_ext = _compact({"extension_type": "property-extension", "message_id": message_id,
                           "document_schema": _text(doc.get("schema")), "identity": ident, "period": period,
                           "content": doc.get("content"), "statistics": stats,
                           "reporting_entity": {"name": entity_name, "contact": contact}})
    if payload is not None:
        try:
            report_ext["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the frozen payload is not UTF-8") from None
        report_ext["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    body = [lab, *incidents, note]
    report = {"type": "report", "id": _id("report", message_id), **stage_objects, "name": title,
              "published": stage_time, "report_types": ["threat-report"],
              "object_refs": [note["id"], *(i["id"] for i in incidents)],
              "extensions": {MIR_EXTENSION: report_ext}}
    markings = [tlp_marking_definition(level) for level in sorted({"TLP:CLEAR", tlp}, key=TLP_ORDER.index)]
    return {"type": "bundle", "id": _id("bundle", message_id), "objects": [*markings, *body, report]}
