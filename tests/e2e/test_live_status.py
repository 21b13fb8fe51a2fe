"""Pages that follow a sighting update themselves, without a reload, and stop asking when done."""

from __future__ import annotations

import time

from catalogue.models import Encounter
from identification.models import IdentityDecision
from identification.services.decisions import match_decide
from tests.e2e.conftest import fits_phone_width, sign_in
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
)

NO_RELOAD = "window.__stillTheSamePage === true"


def test_sighting_page_and_my_sightings_follow_the_sighting_without_reload(
    live_server, new_page, screenshot
) -> None:
    volunteer = UserFactory(role="volunteer", username="live-vol")
    encounter = EncounterFactory(submitted_by=volunteer, status=Encounter.Status.PROCESSING)
    annotation = AnnotationFactory(image=ImageFactory(encounter=encounter))
    known = IndividualFactory(species=encounter.species, code="LIVE-1")
    base = live_server.url

    page = new_page()
    sign_in(page, base, volunteer.username, f"/sightings/{encounter.pk}/")
    phone = new_page(width=390, height=844)
    sign_in(phone, base, volunteer.username, "/sightings/mine/")
    for p in (page, phone):
        p.evaluate("window.__stillTheSamePage = true")
    assert page.inner_text("#sighting-status") == "Processing"
    assert page.get_attribute("#sighting-live", "hx-trigger") == "every 3s"
    row = phone.locator(f"tr[data-sighting='{encounter.pk}'] .status")
    assert row.inner_text() == "Processing"
    screenshot(page, "sighting-processing")

    # The worker stores candidates: both pages say so by themselves.
    Encounter.objects.filter(pk=encounter.pk).update(status=Encounter.Status.AWAITING_REVIEW)
    page.wait_for_function(
        "document.querySelector('#sighting-status').textContent.includes('Candidates ready')"
    )
    phone.wait_for_function(
        f"document.querySelector(\"tr[data-sighting='{encounter.pk}'] .status\")"
        ".textContent.includes('Candidates ready')"
    )
    assert page.evaluate(NO_RELOAD) and phone.evaluate(NO_RELOAD)
    assert fits_phone_width(phone)
    screenshot(phone, "my-sightings-candidates-ready-phone")

    # An expert decides: the sighting page shows it, then stops asking for news.
    match_decide(
        annotation=annotation,
        verdict=IdentityDecision.Verdict.SAME,
        individual=known,
        decided_by=UserFactory(role="expert"),
    )
    page.wait_for_function(
        "document.querySelector('#sighting-status').textContent.includes('Identified as LIVE-1')",
        timeout=40_000,
    )
    assert page.evaluate(NO_RELOAD)
    assert page.get_attribute("#sighting-live", "hx-trigger") is None
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    time.sleep(4)  # longer than the 3 s poll: no request may come
    assert not [url for url in asked if f"/sightings/{encounter.pk}/" in url]
    screenshot(page, "sighting-identified")
    # The badge tells the volunteer on the next page they open.
    page.goto(f"{base}/sightings/mine/")
    assert page.inner_text("#nav-notifications .nav-badge") == "1"
    page.click("#nav-notifications")
    assert "identified as LIVE-1" in page.inner_text("#notifications")
    screenshot(page, "notifications")
