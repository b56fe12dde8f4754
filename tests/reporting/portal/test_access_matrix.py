"""Who may see what: every portal page, detector-API endpoint, reviewer-API and TAXII endpoint and download x
every persona x every kind of object, generated from the project's URLconf so that a new route cannot slip past unclassified.

One test walks the whole matrix against one world and reports every wrong cell together: building the
world (three real deliveries, two TOTP sign-ins) once keeps the run to seconds.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from incidents.models import Incident
from reporting.models import Report
from reporting.packaging.stix import _id as stix_id
from reporting.portal.models import Authority
from tests.conftest import api_client, login_verified, make_detector, post, valid_body
from tests.reporting.portal.conftest import AUTHORITY_A, AUTHORITY_B, delivered_report, pending_report_a, sign_in
from tests.reporting.portal.feed_helpers import bearer, issue_token

PERSONAS = ("staff", "detector_a", "detector_b", "reviewer_a", "reviewer_b", "anonymous")
OBJECTS = ("delivered_a", "delivered_b", "pending", "live")

# Prefixes the matrix deliberately leaves to others. Admin: staff-only, covered by the admin tests
# (tests/reporting/test_staff_otp.py and the admin test modules).
OUT_OF_SCOPE_PREFIXES = {"admin/": "staff admin, covered by its own tests"}
# Public by design: nobody signs in, so the only rule is that they say nothing about any report.
PUBLIC_ROUTES = {
    "healthz": "liveness",
    ".well-known/mir-signing-keys.json": "published verification keys",
    ".well-known/mir-audit-head.json": "published audit-chain head",
    "api/v1/schema/": "OpenAPI schema",
    "api/v1/docs/": "Swagger UI",
    "taxii2/^.*$": "TAXII's answer for any other path (a TAXII error message)",
}
# Every other route, by kind. The kind decides the expected outcome table below.
ROUTE_KINDS = {
    "portal/": "portal_page",
    "portal/login/": "portal_signin",
    "portal/login/code/": "portal_signin",
    "portal/logout/": "portal_signin",
    "portal/reports/<uuid:public_id>/": "portal_report",
    "portal/reports/<uuid:public_id>/document.json": "portal_report",
    "portal/reports/<uuid:public_id>/stix.json": "portal_report",
    "api/v1/incidents/": "api_submit",
    "api/v1/incidents/batch": "api_submit",
    "api/v1/incidents/<str:public_id>": "api_incident",
    "portal/reports/<uuid:public_id>/acknowledge/": "portal_report_write",
    "portal/reports/<uuid:public_id>/questions/": "portal_report_write",
    # The reviewers' machines: the same scope as the portal, through a reviewer token (docs/api.md, docs/taxii.md).
    "api/v1/reviewer/reports/": "reviewer_api_list",
    "api/v1/reviewer/reports/<uuid:public_id>/": "reviewer_api_report",
    "api/v1/reviewer/reports/<uuid:public_id>/document": "reviewer_api_report",
    "api/v1/reviewer/reports/<uuid:public_id>/stix": "reviewer_api_report",
    "taxii2/": "taxii_root",
    "taxii2/reports/": "taxii_root",
    "taxii2/reports/collections/": "taxii_root",
    "taxii2/reports/collections/<str:collection_id>/": "taxii_collection",
    "taxii2/reports/collections/<str:collection_id>/objects/": "taxii_collection",
    "taxii2/reports/collections/<str:collection_id>/manifest/": "taxii_collection",
    "taxii2/reports/collections/<str:collection_id>/objects/<str:object_id>/": "taxii_object",
    "taxii2/reports/collections/<str:collection_id>/objects/<str:object_id>/versions/": "taxii_object",
    # Writes on one report (e.g. acknowledge, ask a question) classify as "portal_report_write": every
    # refused cell of EXPECTED_REPORT_PAGES is POSTed and must store nothing; the allowed ones are left to
    # the feature's own tests.
}
# URL parameters the matrix knows how to fill with an object of the world.
PARAMETERS = {"public_id", "collection_id", "object_id"}

CLASSIFY_HINT = (
    "Classify it in tests/reporting/portal/test_access_matrix.py: add it to ROUTE_KINDS (with an expected-outcome table "
    "for a new kind), PUBLIC_ROUTES or OUT_OF_SCOPE_PREFIXES, and teach PARAMETERS any new parameter name."
)

# The expected outcome of each (kind, persona) for each object. "own" = 200 and the page shows this object;
# "404" = the same answer as for an id that does not exist; "login" = 302 to the portal sign-in;
# "401" = the API's problem answer for a missing or foreign credential.
LOGIN, NOT_FOUND, UNAUTHORIZED, OWN = "login", "404", "401", "own"
EXPECTED_REPORT_PAGES = {
    #              delivered_a  delivered_b  pending    live
    "staff":      (LOGIN,       LOGIN,       LOGIN,     LOGIN),  # staff are not reviewers
    "detector_a": (LOGIN,       LOGIN,       LOGIN,     LOGIN),  # bearer tokens mean nothing to the portal
    "detector_b": (LOGIN,       LOGIN,       LOGIN,     LOGIN),
    "reviewer_a": (OWN,         NOT_FOUND,   NOT_FOUND, NOT_FOUND),
    "reviewer_b": (NOT_FOUND,   OWN,         NOT_FOUND, NOT_FOUND),
    "anonymous":  (LOGIN,       LOGIN,       LOGIN,     LOGIN),
}
EXPECTED_INCIDENT_API = {
    #              delivered_a   delivered_b   pending       live
    "staff":      (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),  # a session is no API credential
    "detector_a": (NOT_FOUND,    NOT_FOUND,    NOT_FOUND,    OWN),  # detector A filed the live incident
    "detector_b": (NOT_FOUND,    NOT_FOUND,    NOT_FOUND,    NOT_FOUND),
    "reviewer_a": (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),
    "reviewer_b": (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),
    "anonymous":  (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),
}
# The reviewer API and TAXII: reviewers through their token (a session, a detector token or nothing is 401).
EXPECTED_REVIEWER_MACHINES = {
    #              delivered_a   delivered_b   pending       live
    "staff":      (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),
    "detector_a": (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),  # detector tokens are not found
    "detector_b": (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),
    "reviewer_a": (OWN,          NOT_FOUND,    NOT_FOUND,    NOT_FOUND),
    "reviewer_b": (NOT_FOUND,    OWN,          NOT_FOUND,    NOT_FOUND),
    "anonymous":  (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED),
}
# TAXII collections are one per authority: the reviewer's own, or 404 for the other one.
EXPECTED_COLLECTIONS = {
    #              collection_a  collection_b
    "reviewer_a": (OWN,          NOT_FOUND),
    "reviewer_b": (NOT_FOUND,    OWN),
}
# Pages without an object: which objects each persona may find listed ("login"/"401" = refused outright).
EXPECTED_LIST_PAGES = {
    "staff": LOGIN, "detector_a": LOGIN, "detector_b": LOGIN, "anonymous": LOGIN,
    "reviewer_a": ("delivered_a",), "reviewer_b": ("delivered_b",),
}
# Writes of the detector API: only a detector token with the submit scope gets past authentication.
SUBMIT_REFUSED = {"staff": UNAUTHORIZED, "reviewer_a": UNAUTHORIZED, "reviewer_b": UNAUTHORIZED,
                  "anonymous": UNAUTHORIZED}


def row_counts() -> dict[str, int]:
    """Rows of every table except sessions (a refused request may still touch its session)."""
    return {m._meta.label: m._default_manager.count() for m in apps.get_models()
            if m._meta.label != "sessions.Session"}


def walk(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if any(route.startswith(p) for p in OUT_OF_SCOPE_PREFIXES):
                continue
            yield from walk(entry.url_patterns, route)
        else:
            yield route, entry


def classified_routes() -> dict[str, str]:
    """Every route of the URLconf with its kind; unknown routes or parameters fail with a hint."""
    routes, problems = {}, []
    for route, entry in walk(get_resolver().url_patterns):
        if route in PUBLIC_ROUTES:
            routes[route] = "public"
            continue
        if route not in ROUTE_KINDS:
            problems.append(f"route {route!r} (view {entry.lookup_str}) is not classified")
            continue
        unknown = set(entry.pattern.converters) - PARAMETERS
        if unknown:
            problems.append(f"route {route!r} has parameters {sorted(unknown)} the matrix cannot fill")
        routes[route] = ROUTE_KINDS[route]
    assert not problems, "\n".join(problems) + "\n" + CLASSIFY_HINT
    return routes


@dataclass
class Thing:
    public_id: str
    secrets: tuple[str, ...]  # strings that identify it: title, reference, SHA-256, public ids
    stix_id: str  # its incident's STIX object id, as the TAXII feed would name it


@dataclass
class World:
    clients: dict  # browsers: sessions (staff, reviewers), bearer tokens (detectors), nothing (anonymous)
    machine_clients: dict  # the same personas as machines: reviewers hold a reviewer token instead
    things: dict[str, Thing]
    collections: tuple[str, str]  # the TAXII collection ids of authority A and B


def _report_thing(report: Report) -> Thing:
    incident = report.incident
    secrets = (incident.title, incident.reference, str(incident.public_id), str(report.public_id))
    if report.payload_sha256:
        secrets += (report.payload_sha256,)
    return Thing(str(report.public_id), secrets, stix_id("incident", str(incident.public_id)))


@pytest.fixture
def matrix_world(world, staff_user) -> World:
    detector_a = make_detector("matrix-detector-a")[1]
    detector_b = make_detector("matrix-detector-b")[1]
    live = post(api_client(detector_a), valid_body(title="Live record filed by detector A"), key="matrix-live")
    assert live.status_code == 201, live.content
    incident = Incident.objects.get(public_id=live.json()["id"])
    things = {
        "delivered_a": _report_thing(delivered_report("authority-a", title="Matrix report for authority A")),
        "delivered_b": _report_thing(delivered_report("authority-b", title="Matrix report for authority B")),
        "pending": _report_thing(pending_report_a(world)),
        "live": Thing(str(incident.public_id), (incident.title, incident.reference, str(incident.public_id)),
                      stix_id("incident", str(incident.public_id))),
    }
    reviewer_a, reviewer_b = Client(), Client()
    sign_in(reviewer_a, world.reviewer_a)
    sign_in(reviewer_b, world.reviewer_b)
    clients = {
        "staff": login_verified(Client(), staff_user),
        "detector_a": api_client(detector_a),
        "detector_b": api_client(detector_b),
        "reviewer_a": reviewer_a,
        "reviewer_b": reviewer_b,
        "anonymous": Client(),
    }
    machine_clients = {**clients, "reviewer_a": bearer(issue_token(world.reviewer_a.reviewer).secret),
                       "reviewer_b": bearer(issue_token(world.reviewer_b.reviewer).secret)}
    collections = tuple(str(Authority.objects.get(name=name).public_id) for name in (AUTHORITY_A, AUTHORITY_B))
    return World(clients, machine_clients, things, collections)


def _url(route: str, public_id: str | None = None, *, collection: str = "", object_id: str = "") -> str:
    return "/" + (route.replace("<uuid:public_id>", public_id or "").replace("<str:public_id>", public_id or "")
                  .replace("<str:collection_id>", collection).replace("<str:object_id>", object_id))


def _leaks(body: str, things: dict[str, Thing], allowed: tuple[str, ...]) -> list[str]:
    return [f"{name}: {secret!r}" for name, thing in things.items() if name not in allowed
            for secret in thing.secrets if secret in body]


def _check(response, expected: str, *, things: dict[str, Thing], allowed: tuple[str, ...]) -> str | None:
    body = response.content.decode(errors="replace")
    leaks = _leaks(body, things, allowed)
    if leaks:
        return f"leaks {leaks}"
    status = response.status_code
    if expected == LOGIN:
        location = response.get("Location", "")
        if status != 302 or not location.startswith(reverse("portal:login")):
            return f"expected a redirect to the portal sign-in, got {status} {location}"
    elif expected == NOT_FOUND and status != 404:
        return f"expected 404, got {status}"
    elif expected == UNAUTHORIZED and status != 401:
        return f"expected 401, got {status}"
    elif expected == OWN and status != 200:
        return f"expected 200, got {status}"
    return None


def _machine_cells(route: str, kind: str, persona: str, world: World) -> list[tuple[str, str | None]]:
    """The reviewer API and TAXII: (url, problem or None) for each cell of this route and persona."""
    client, things = world.machine_clients[persona], world.things
    reviewer = persona in EXPECTED_COLLECTIONS
    own = tuple(name for name, e in zip(OBJECTS, EXPECTED_REVIEWER_MACHINES[persona], strict=True) if e == OWN)
    cells = []

    def cell(url: str, expected: str, allowed: tuple[str, ...] = ()) -> None:
        response = client.get(url)
        problem = _check(response, expected, things=things, allowed=allowed)
        if not problem and expected == OWN and kind in ("reviewer_api_list", "taxii_collection") \
                and url.endswith(("/reports/", "/objects/", "/manifest/")):
            body = response.content.decode(errors="replace")
            key = 1 if kind == "reviewer_api_list" else 2  # listed by reference / by incident STIX id
            missing = [name for name in allowed if (things[name].secrets[key] if key == 1
                                                    else things[name].stix_id) not in body]
            problem = f"does not list its own {missing}" if missing else None
        cells.append((url, problem))

    if kind == "reviewer_api_list" or kind == "taxii_root":
        cell(_url(route), OWN if reviewer else UNAUTHORIZED, own)
    elif kind == "reviewer_api_report":
        for name, expected in zip(OBJECTS, EXPECTED_REVIEWER_MACHINES[persona], strict=True):
            cell(_url(route, things[name].public_id), expected, (name,) if expected == OWN else ())
    elif kind == "taxii_collection":
        for index, collection in enumerate(world.collections):
            expected = EXPECTED_COLLECTIONS[persona][index] if reviewer else UNAUTHORIZED
            cell(_url(route, collection=collection), expected, own if expected == OWN else ())
    else:  # taxii_object: an object of the reviewer's own collection, or anything of the other one
        for index, collection in enumerate(world.collections):
            mine = reviewer and EXPECTED_COLLECTIONS[persona][index] == OWN
            for name, expected in zip(OBJECTS, EXPECTED_REVIEWER_MACHINES[persona], strict=True):
                expected = expected if mine or not reviewer else NOT_FOUND
                cell(_url(route, collection=collection, object_id=things[name].stix_id), expected,
                     (name,) if expected == OWN else ())
    return cells


def test_every_route_is_classified():
    routes = classified_routes()
    assert "portal/reports/<uuid:public_id>/" in routes and "api/v1/incidents/<str:public_id>" in routes


def test_an_unclassified_route_fails_the_matrix(monkeypatch):
    monkeypatch.delitem(ROUTE_KINDS, "portal/reports/<uuid:public_id>/stix.json")
    with pytest.raises(AssertionError, match=r"stix\.json.*not classified(.|\n)*Classify it"):
        classified_routes()


def test_a_report_write_route_is_checked_for_refusals(matrix_world, monkeypatch):
    """A POST route on one report (the acknowledgement branch adds such) is exercised once classified:
    here the detail page stands in for it, and a refused POST to it stores nothing."""
    monkeypatch.setitem(ROUTE_KINDS, "portal/reports/<uuid:public_id>/", "portal_report_write")
    test_access_matrix(matrix_world)  # asserts, per refused POST, the answer and that no table grew


def test_an_unknown_parameter_fails_the_matrix(monkeypatch):
    monkeypatch.setattr("tests.reporting.portal.test_access_matrix.PARAMETERS", set())
    with pytest.raises(AssertionError, match="cannot fill"):
        classified_routes()


def test_access_matrix(matrix_world):
    things, failures, cells = matrix_world.things, [], 0
    for route, kind in classified_routes().items():
        for persona in PERSONAS:
            client = matrix_world.clients[persona]
            if kind == "portal_report_write":
                for name, expected in zip(OBJECTS, EXPECTED_REPORT_PAGES[persona], strict=True):
                    if expected == OWN:
                        continue
                    before, url = row_counts(), _url(route, things[name].public_id)
                    problem = _check(client.post(url, {"note": "refused"}), expected, things=things, allowed=())
                    if row_counts() != before:
                        problem = (problem or "") + " and stored rows"
                    cells += 1
                    if problem:
                        failures.append(f"{persona:10s} POST {url} ({name}): {problem}")
                continue
            if kind in ("portal_report", "api_incident"):
                table = EXPECTED_REPORT_PAGES if kind == "portal_report" else EXPECTED_INCIDENT_API
                for name, expected in zip(OBJECTS, table[persona], strict=True):
                    allowed = (name,) if expected == OWN else ()
                    problem = _check(client.get(_url(route, things[name].public_id)), expected,
                                     things=things, allowed=allowed)
                    cells += 1
                    if problem:
                        failures.append(f"{persona:10s} GET {_url(route, things[name].public_id)} ({name}): {problem}")
                continue
            if kind.startswith(("reviewer_api", "taxii")):
                found = _machine_cells(route, kind, persona, matrix_world)
                cells += len(found)
                failures += [f"{persona:10s} GET {url}: {problem}" for url, problem in found if problem]
                continue
            if kind == "api_submit":
                if persona not in SUBMIT_REFUSED:
                    continue  # detectors may file: tests/incidents cover what they get back
                before = row_counts()
                response = post(client, valid_body(title="Refused write"), key=f"matrix-{persona}", path=_url(route))
                problem = _check(response, SUBMIT_REFUSED[persona], things=things, allowed=())
                if row_counts() != before:
                    problem = (problem or "") + " and stored rows"
            elif kind == "portal_page":
                expected = EXPECTED_LIST_PAGES[persona]
                allowed = expected if isinstance(expected, tuple) else ()
                response = client.get(_url(route))
                problem = _check(response, OWN if allowed else expected, things=things, allowed=allowed)
                body = response.content.decode(errors="replace")
                missing = [name for name in allowed if things[name].secrets[0] not in body]
                if not problem and missing:
                    problem = f"does not list its own {missing}"
            else:  # public and sign-in pages answer everyone; they must simply say nothing about a report
                response = client.get(_url(route))
                problem = _check(response, "", things=things, allowed=())
                if not problem and response.status_code >= 500:
                    problem = f"answered {response.status_code}"
            cells += 1
            if problem:
                failures.append(f"{persona:10s} {kind} /{route}: {problem}")
    assert not failures, f"{len(failures)} of {cells} cells wrong:\n" + "\n".join(failures)
    assert cells >= 100
