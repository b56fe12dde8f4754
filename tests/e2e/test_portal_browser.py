"""A reviewer and a staff member in a real browser (headless Chromium) against a live server.

The reviewer signs in with password and a TOTP code, finds a report with the list's search and filters,
sees its signature verified, acknowledges it and asks a question, all with JavaScript disabled; a staff
member answers in the admin; the real delivery service sends the answer stage to the sandbox receiver;
the reviewer sees question and answer together and the new stage. The pages are checked at phone width.
Screenshots go to test-artifacts/.
"""
from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.test.testcases import LiveServerThread
from django.utils import timezone
from playwright.sync_api import expect

from reporting.choices import ANSWER_STAGE_NAME, ReportStatus
from reporting.models import Report
from reporting.portal.models import Acknowledgement, Authority, Question, QuestionStatus
from reporting.portal.services.reviewers import reviewer_create
from reporting.sandbox_receiver.app import SandboxApp
from reporting.sandbox_receiver.ledger import Ledger
from reporting.sandbox_receiver.server import running
from reporting.services.delivery import report_deliver
from reporting.services.staff_otp import staff_otp_enrol
from tests.conftest import SYSTEM, make_incident
from tests.e2e.browser import (
    LAPTOP,
    PHONE,
    chromium,
    horizontal_overflow,
    reviewer_login,
    screenshot,
    staff_login,
)
from tests.reporting.conftest import make_destination, new_webhook_secret
from tests.reporting.portal.conftest import PASSWORD, totp_now
from tests.reporting.test_delivery import _keys

pytestmark = pytest.mark.e2e

STAFF_PASSWORD = "staff passphrase for the browser 7"


@pytest.fixture
def sandbox(transactional_db, tmp_path):
    """The sandbox receiver on loopback as Authority A's webhook destination, with the default rules."""
    secret = new_webhook_secret()
    ledger = Ledger(tmp_path / "sandbox")
    with running(SandboxApp(secret=secret, ledger=ledger, keys=_keys())) as server:
        host, port = server.server_address[:2]
        make_destination("authority-a", address=f"http://{host}:{port}/webhook", secret=secret,
                         authority="Authority A")
        yield ledger


@pytest.fixture
def portal_url(sandbox):
    """The site served by Django's live-server thread for this test only (static files included).

    Not pytest-django's session-wide ``live_server``: that one outlives the test database and its last
    connection makes the database's teardown fail. ``terminate`` closes every connection it opened.
    """
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait(timeout=30)
    if server.error:
        raise server.error
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.terminate()


def _deliver_early_notice(title: str) -> Report:
    incident = make_incident(severity="SEV-1", title=title)
    report = Report.objects.get(incident=incident, stage_name="early_notice")
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    return report


def test_reviewer_acknowledges_asks_and_sees_the_answer_delivered(sandbox, portal_url):
    base = portal_url
    issued = reviewer_create(actor=SYSTEM, username="reviewer_a", email="a@authority-a.example",
                             authority=Authority.objects.get(name="Authority A"), password=PASSWORD)
    stella = get_user_model().objects.create_user(username="stella", email="stella@lab.example",
                                                  password=STAFF_PASSWORD, is_staff=True, is_superuser=True)
    staff_device = staff_otp_enrol(actor=SYSTEM, user=stella, backup_codes=0)
    report = _deliver_early_notice("Credential phishing kit built with the model")
    _deliver_early_notice("Unrelated scraping noise")
    wished_by = (timezone.now().astimezone(UTC).date() + timedelta(days=5)).isoformat()

    with chromium() as browser:
        # --- the reviewer, JavaScript off: everything is plain forms -------------------------------------
        reviewer = browser.new_context(viewport=LAPTOP, java_script_enabled=False)
        page = reviewer.new_page()
        reviewer_login(page, base, username="reviewer_a", password=PASSWORD, code=totp_now(issued))
        expect(page.get_by_role("heading", name="Reports delivered to Authority A")).to_be_visible()
        expect(page.get_by_role("link", name=report.incident.reference)).to_be_visible()

        page.get_by_label("Search reference or title").fill("phishing")
        page.get_by_label("Acknowledged").select_option("no")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("caption")).to_contain_text("1 report")
        expect(page.get_by_text("Unrelated scraping noise")).to_have_count(0)
        screenshot(page, "01-list-filtered")
        page.get_by_role("link", name=report.incident.reference).click()

        expect(page.get_by_role("heading", level=1)).to_contain_text("Credential phishing kit")
        expect(page.get_by_role("status").filter(has_text="Signature")).to_contain_text("Signature: valid.")
        expect(page.get_by_text(report.payload_sha256).first).to_be_visible()
        screenshot(page, "02-detail-signature-valid")

        page.get_by_role("button", name="Acknowledge receipt").click()
        expect(page.locator(".ack-state")).to_contain_text("Acknowledged by reviewer_a")
        assert Acknowledgement.objects.get(report=report).reviewer == issued.reviewer

        # A question without text is refused on the page and nothing is stored.
        page.get_by_label("Answer wished by (date, UTC)").fill(wished_by)
        page.get_by_role("button", name="Send the question").click()
        expect(page.get_by_text("Your question was not sent")).to_be_visible()
        expect(page.get_by_text("Write your question.")).to_be_visible()
        assert not Question.objects.exists()

        page.get_by_label("Your question").fill("Which hosting provider served the phishing pages, and is it down?")
        page.get_by_label("Answer wished by (date, UTC)").fill(wished_by)
        page.get_by_role("button", name="Send the question").click()
        expect(page.get_by_text("Your question was sent to the lab")).to_be_visible()
        expect(page.get_by_text("Waiting for the lab's answer.")).to_be_visible()
        screenshot(page, "03-detail-acknowledged-question-asked")
        question = Question.objects.get()

        # --- staff answer in the admin ----------------------------------------------------------------
        staff = browser.new_context(viewport=LAPTOP)
        admin = staff.new_page()
        staff_login(admin, base, username="stella", password=STAFF_PASSWORD, code=totp_now(staff_device))
        admin.goto(f"{base}/admin/portal/question/")
        expect(admin.get_by_text("Which hosting provider")).to_be_visible()
        admin.locator("tr", has_text="Which hosting provider").locator("th a").click()
        admin.locator("#id_answer").fill("Provider Example Hosting; the pages were taken down on request.")
        admin.locator("input[name=_save]").click()
        expect(admin.locator(".messagelist")).to_contain_text("supplemental stage")
        admin.goto(f"{base}/admin/portal/question/?status__exact=answered")
        expect(admin.get_by_text("Which hosting provider")).to_be_visible()
        screenshot(admin, "04-admin-question-answered")
        question.refresh_from_db()
        assert question.status == QuestionStatus.ANSWERED
        stage = question.answer_report
        assert stage.stage_name == ANSWER_STAGE_NAME and stage.status == ReportStatus.PENDING

        # Before delivery the reviewer is told the answer is on its way, not shown it.
        page.reload()
        expect(page.get_by_text("the answer is being delivered")).to_be_visible()

        # --- the real delivery service sends the answer stage to the sandbox receiver -----------------------
        assert report_deliver(report_id=stage.pk).outcome == "delivered"
        entry = next(e for e in sandbox.entries() if e["webhook_id"] == str(stage.public_id))
        assert entry["verified"]

        page.reload()
        answer = page.locator(".answer")
        expect(page.locator(".question-text")).to_contain_text("Which hosting provider")
        expect(answer).to_contain_text("Provider Example Hosting")
        expect(page.locator("#stages-heading + ul")).to_contain_text("answer #1")
        screenshot(page, "05-detail-question-and-answer")
        answer.get_by_role("link", name="answer #1").click()
        expect(page.get_by_text("This stage answers a question about")).to_be_visible()
        expect(page.get_by_role("status").filter(has_text="Signature")).to_contain_text("Signature: valid.")

        # --- a phone: the same pages, no horizontal scrolling ---------------------------------------
        phone = browser.new_context(viewport=PHONE, storage_state=reviewer.storage_state(), is_mobile=True,
                                    has_touch=True)
        small = phone.new_page()
        for path, name in (("/portal/?q=phishing", "06-phone-list"),
                           (f"/portal/reports/{report.public_id}/", "07-phone-detail"),
                           (f"/portal/reports/{stage.public_id}/", "08-phone-answer-stage")):
            small.goto(f"{base}{path}")
            expect(small.locator("h1")).to_be_visible()
            assert horizontal_overflow(small) <= 0, f"{path} scrolls sideways at {PHONE['width']} px"
            screenshot(small, name)
        signed_out = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
        signed_out.goto(f"{base}/portal/login/")
        assert horizontal_overflow(signed_out) <= 0
