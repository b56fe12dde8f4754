"""The TAXII 2.1 read interface, pulled with taxii2-client from a live server on loopback."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from taxii2client.common import TokenAuth
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from incidents.actors import Actor
from incidents.services.workflow import incident_update
from reporting.portal.models import AccessChannel, ReviewerAccess
from reporting.portal.services.tokens import reviewer_token_revoke
from reporting.portal.taxii.timestamps import format_timestamp, parse_timestamp
from tests.reporting.portal.conftest import delivered_report, pending_report_a
from tests.reporting.portal.feed_helpers import issue_token

SYSTEM = Actor.system("tests")


@pytest.fixture
def feed(world, live_server):
    token_a = issue_token(world.reviewer_a.reviewer).secret
    token_b = issue_token(world.reviewer_b.reviewer).secret
    authority_a = world.reviewer_a.reviewer.authority
    authority_b = world.reviewer_b.reviewer.authority
    root = f"{live_server.url}/taxii2/reports/"
    opened: list = []
    yield {
        "token_a": token_a, "token_b": token_b, "root": root, "live": live_server.url,
        "collection_a": f"{root}collections/{authority_a.public_id}/",
        "collection_b": f"{root}collections/{authority_b.public_id}/",
        "opened": opened,
    }
    # Keep-alive connections hold live-server threads, and their database connections, past the test.
    for client in opened:
        client.close()


def collection(feed, which: str = "a", *, basic: bool = True) -> Collection:
    secret = feed[f"token_{which}"]
    if basic:
        return opened(feed, Collection(feed[f"collection_{which}"], user=f"reviewer_{which}", password=secret))
    return opened(feed, Collection(feed[f"collection_{which}"], auth=TokenAuth(secret)))


def opened(feed, client):  # noqa: ANN001, ANN201
    feed["opened"].append(client)
    return client


def all_objects(coll: Collection, per_request: int, **filters) -> list[dict]:
    objects = []
    for envelope in as_pages(coll.get_objects, per_request=per_request, **filters):
        objects += envelope.get("objects", [])
    return objects


def test_discovery_root_and_one_collection_per_authority(feed, world):
    server = opened(feed, Server(f"{feed['live']}/taxii2/", user="reviewer_a", password=feed["token_a"]))
    assert server.default.url == feed["root"]
    assert [root.url for root in server.api_roots] == [feed["root"]]
    api_root = opened(feed, ApiRoot(feed["root"], user="reviewer_a", password=feed["token_a"]))
    assert api_root.versions == ["application/taxii+json;version=2.1"]
    [only] = api_root.collections
    assert only.id == str(world.reviewer_a.reviewer.authority.public_id)
    assert only.can_read is True and only.can_write is False
    assert only.media_types == ["application/stix+json;version=2.1"]
    logged = ReviewerAccess.objects.filter(channel=AccessChannel.TAXII, action="taxii_directory")
    assert logged.count() >= 3 and all(access.token_id for access in logged)


def test_paging_through_more_objects_than_a_page_deduplicates_shared_objects(feed, world):
    reports = [delivered_report("authority-a", title=f"Feed report {n}",
                                techniques=["AML.T0054"]) for n in range(3)]
    coll = collection(feed)
    objects = all_objects(coll, per_request=4)
    keys = [(obj["id"], obj.get("modified", obj.get("created"))) for obj in objects]
    assert len(keys) == len(set(keys)), "an object version was served twice"
    by_type: dict[str, list[dict]] = {}
    for obj in objects:
        by_type.setdefault(obj["type"], []).append(obj)
    assert len(by_type["identity"]) == 1  # the lab, shared by every report
    assert len(by_type["attack-pattern"]) == 1  # AML.T0054, shared
    assert len(by_type["marking-definition"]) == len({obj["id"] for obj in by_type["marking-definition"]})
    assert len(by_type["report"]) == 3 and len(by_type["incident"]) == 3
    assert len(objects) > 4 * 3  # several pages were needed
    # Each report object carries the exact bytes as sent, so the signature can be checked from TAXII.
    sent = {report.payload for report in reports}
    carried = {next(iter(obj["extensions"].values()))["payload"] for obj in by_type["report"]}
    assert carried == sent

    manifest = []
    for envelope in as_pages(coll.get_manifest, per_request=5):
        manifest += envelope.get("objects", [])
    assert [(m["id"], m["version"]) for m in manifest] == keys
    assert all(m["media_type"] == "application/stix+json;version=2.1" for m in manifest)
    dates = [parse_timestamp(m["date_added"]) for m in manifest]
    assert dates == sorted(dates)
    assert {d for d in dates} <= {report.delivered_at for report in reports}

    pulled = ReviewerAccess.objects.filter(channel=AccessChannel.TAXII, action="taxii_objects")
    assert {access.report_id for access in pulled} == {report.pk for report in reports}


def test_added_after_returns_only_what_was_delivered_since(feed, world):
    first = delivered_report("authority-a", title="Before the checkpoint")
    coll = collection(feed)
    before = all_objects(coll, per_request=50)
    checkpoint = format_timestamp(first.delivered_at)  # what X-TAXII-Date-Added-Last said
    assert all_objects(coll, per_request=50, added_after=checkpoint) == []

    second = delivered_report("authority-a", title="After the checkpoint")
    new = all_objects(coll, per_request=3, added_after=checkpoint)
    assert new and {obj["type"] for obj in new} >= {"incident", "report", "note"}
    assert "identity" not in {obj["type"] for obj in new}  # already added with the first report
    report_objects = [obj for obj in new if obj["type"] == "report"]
    assert len(report_objects) == 1 and second.sent_title in report_objects[0]["name"]
    assert not {obj["id"] for obj in new if obj["type"] in ("incident", "report")} & {obj["id"] for obj in before}


def test_reviewer_of_b_sees_nothing_of_a(feed, world):
    report_a = delivered_report("authority-a", title="Only for A")
    delivered_report("authority-b", title="Only for B")
    pending_report_a(world)
    with pytest.raises(requests.HTTPError) as caught:
        opened(feed, Collection(feed["collection_a"], user="reviewer_b", password=feed["token_b"])).get_objects()
    assert caught.value.response.status_code == 404
    assert caught.value.response.json()["http_status"] == "404"
    api_root = opened(feed, ApiRoot(feed["root"], user="reviewer_b", password=feed["token_b"]))
    assert [c.id for c in api_root.collections] == [str(world.reviewer_b.reviewer.authority.public_id)]
    objects_b = all_objects(collection(feed, "b"), per_request=10)
    names = " ".join(obj.get("name", "") for obj in objects_b)
    assert "Only for B" in names and "Only for A" not in names and "Not yet delivered" not in names
    assert str(report_a.public_id) not in json.dumps(objects_b)


def test_object_and_versions_endpoints_and_token_auth(feed, world):
    delivered_report("authority-a", title="Object lookup")
    coll = collection(feed, basic=False)  # taxii2-client's TokenAuth
    report_obj = next(obj for obj in all_objects(coll, per_request=50) if obj["type"] == "report")
    envelope = coll.get_object(report_obj["id"])
    assert envelope["objects"] == [report_obj] and envelope["more"] is False
    versions = coll.object_versions(report_obj["id"])
    assert versions["versions"] == [report_obj["modified"]]
    with pytest.raises(requests.HTTPError) as caught:
        coll.get_object("report--00000000-0000-4000-8000-000000000000")
    assert caught.value.response.status_code == 404


def test_stages_are_versions_of_one_incident(feed, world, staff_user):
    from reporting.models import Report
    from reporting.services.reports import report_approve
    from tests.reporting.portal.conftest import deliver

    first = delivered_report("authority-a", title="Two stages")
    later = (Report.objects.filter(incident_id=first.incident_id, destination=world.destination_a)
             .exclude(pk=first.pk).order_by("id").first())
    if later is None:
        pytest.fail("the default rules owe a second stage for a SEV-1 incident")
    later = report_approve(report=later, actor=Actor.for_user(staff_user), reason="full report reviewed")
    deliver(Report.objects.get(pk=later.pk))
    coll = collection(feed)
    incident_versions = [obj for obj in all_objects(coll, per_request=50, version="all")
                         if obj["type"] == "incident"]
    assert len(incident_versions) == 2 and len({obj["id"] for obj in incident_versions}) == 1
    last = [obj for obj in all_objects(coll, per_request=50) if obj["type"] == "incident"]
    assert len(last) == 1 and last[0]["modified"] == max(obj["modified"] for obj in incident_versions)
    first_only = [obj for obj in all_objects(coll, per_request=50, version="first") if obj["type"] == "incident"]
    assert first_only[0]["modified"] == min(obj["modified"] for obj in incident_versions)


def test_revoked_token_and_detector_token_are_refused(feed, world, detector_a):
    delivered_report("authority-a")
    token = world.reviewer_a.reviewer.tokens.first()
    reviewer_token_revoke(actor=SYSTEM, token=token, reason="test")
    for auth in ({"user": "reviewer_a", "password": feed["token_a"]},
                 {"user": "reviewer_a", "password": detector_a[1]}):
        with pytest.raises(requests.HTTPError) as caught:
            opened(feed, Collection(feed["collection_a"], **auth)).get_objects()
        response = caught.value.response
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/taxii+json;version=2.1"
        assert response.json()["http_status"] == "401"


def test_frozen_document_not_the_live_incident(feed, world):
    report = delivered_report("authority-a", title="Title as sent")
    incident_update(incident=report.incident, actor=SYSTEM, fields={"title": "Title edited afterwards"},
                    reason="re-triage")
    names = " ".join(obj.get("name", "") for obj in all_objects(collection(feed), per_request=50))
    assert "Title as sent" in names and "edited afterwards" not in names


def test_headers_on_a_live_page(feed, world):
    delivered_report("authority-a")
    response = requests.get(f"{feed['collection_a']}objects/", params={"limit": 2},
                            headers={"Accept": "application/taxii+json;version=2.1"},
                            auth=("reviewer_a", feed["token_a"]), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/taxii+json;version=2.1"
    first = parse_timestamp(response.headers["X-TAXII-Date-Added-First"])
    last = parse_timestamp(response.headers["X-TAXII-Date-Added-Last"])
    assert first <= last and last - first < timedelta(days=1)
    body = response.json()
    assert body["more"] is True and body["next"] and len(body["objects"]) == 2
