"""The main flow in a real browser, with a real worker.

A volunteer signs up and reports a sighting of a known chimpanzee; the worker embeds it and
ranks candidates; an expert confirms it from the keyboard on the review page; the chimpanzee's
public page then shows the sighting on its timeline and map, its place coarsened because the
species is sensitive.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from catalogue.models import Annotation, Encounter, Individual, Species
from catalogue.services.imports import dataset_plan
from identification.models import Embedding, Identification
from identification.services.pipeline import dataset_ingest
from tests.factories import UserFactory
from tests.helpers import wait_until

EXACT = ("0.56789", "29.87654")  # where the volunteer saw it
COARSE = (0.6, 29.9)  # what the public may see (grid 0.1°)


def held_back_photo(dataset: Path, identity: str, index: int) -> Path:
    with open(dataset / "metadata.csv", newline="") as handle:
        paths = sorted(row["path"] for row in csv.DictReader(handle) if row["identity"] == identity)
    return dataset / paths[index]


def fits_phone_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.slow
def test_volunteer_sighting_confirmed_by_expert_appears_coarsened_on_public_page(
    live_server, celery_worker, shared_datasets, new_page, screenshot, settings
) -> None:
    settings.SENSITIVE_COORDINATE_GRID = 0.1
    dataset = shared_datasets / "chimp_faces_demo"
    species = Species.objects.create(name="Chimpanzee", slug="chimpanzee", sensitive=True)
    plan = dataset_plan(
        metadata_csv=dataset / "metadata.csv",
        species=species,
        max_individuals=3,
        images_per_individual=3,
    )
    assert not plan.errors
    dataset_ingest(plan=plan)
    known = Individual.objects.get(species=species, code=plan.rows[0].identity)
    expert = UserFactory(role="expert", username="dr-goodall")
    base = live_server.url

    # 1. A volunteer signs up (while the worker embeds the imported photos).
    volunteer = new_page()
    volunteer.goto(f"{base}/accounts/signup/")
    volunteer.fill("#id_username", "vera")
    volunteer.fill("#id_password1", "a-long-Passphrase-42")
    volunteer.fill("#id_password2", "a-long-Passphrase-42")
    screenshot(volunteer, "signup")
    volunteer.get_by_role("button", name="Create account").click()
    volunteer.wait_for_url(f"{base}/sightings/new/")
    wait_until(
        lambda: Embedding.objects.filter(species=species).count() == len(plan.rows), timeout=90
    )

    # 2. ... and reports a sighting: the held-back fourth photo of a known individual.
    volunteer.select_option("#id_species", label="Chimpanzee")
    volunteer.fill("#id_observed_at", "2025-06-01T10:30")
    volunteer.locator("#location-map").click()  # the map pin fills latitude and longitude
    assert volunteer.input_value("#id_latitude") and volunteer.input_value("#id_longitude")
    assert volunteer.locator("#location-map .location-pin").count() == 1
    volunteer.fill("#id_latitude", EXACT[0])
    volunteer.fill("#id_longitude", EXACT[1])
    volunteer.set_input_files("#id_photos", str(held_back_photo(dataset, known.code, 3)))
    volunteer.wait_for_selector("#previews .preview img")
    screenshot(volunteer, "upload-form")
    volunteer.locator("button[type=submit]", has_text="Submit sighting").focus()
    volunteer.keyboard.press("Enter")
    volunteer.wait_for_selector("text=Thank you! Sighting")
    screenshot(volunteer, "uploaded")
    encounter = Encounter.objects.get(submitted_by__username="vera")
    annotation = Annotation.objects.get(image__encounter=encounter)

    # 3. The worker produces candidates; the volunteer sees that on "my sightings".
    wait_until(
        lambda: Identification.objects.filter(
            annotation=annotation, state=Identification.State.READY
        ).exists(),
        timeout=90,
    )
    volunteer.goto(f"{base}/sightings/mine/")
    row = volunteer.locator(f"tr[data-sighting='{encounter.pk}']")
    assert "Candidates ready" in row.inner_text()
    screenshot(volunteer, "my-sightings-candidates-ready")

    # 4. An expert confirms it on the review page, from the keyboard.
    reviewer = new_page()
    reviewer.goto(f"{base}/accounts/login/?next=/review/{annotation.pk}/")
    reviewer.fill("#id_username", expert.username)
    reviewer.fill("#id_password", "correct-horse-battery")
    reviewer.get_by_role("button", name="Sign in").click()
    reviewer.wait_for_url(f"{base}/review/{annotation.pk}/")
    cards = reviewer.locator("li.candidate")
    titles = [cards.nth(i).locator("h2").inner_text() for i in range(cards.count())]
    position = next(i for i, title in enumerate(titles) if known.code in title)
    screenshot(reviewer, "review-candidates")
    reviewer.locator("body").focus()
    for _ in range(position):
        reviewer.keyboard.press("j")
    assert known.code in reviewer.locator("li.candidate.current h2").inner_text()
    reviewer.keyboard.press("s")
    wait_until(
        lambda: Annotation.objects.filter(pk=annotation.pk, individual=known).exists(), timeout=30
    )
    reviewer.wait_for_load_state()
    screenshot(reviewer, "review-confirmed")

    # 5. The public page shows the sighting on the timeline and the map, coarsened.
    visitor = new_page()
    visitor.goto(f"{base}/individuals/{known.pk}/")
    timeline = visitor.locator(f"#timeline li[data-sighting='{encounter.pk}']")
    assert "1 Jun 2025" in timeline.inner_text()
    assert f"near {COARSE[0]}, {COARSE[1]}" in timeline.inner_text()
    visitor.wait_for_selector("#sightings-map path.sighting-marker")
    assert visitor.locator("#sightings-map path.sighting-marker").count() == 1
    markers = json.loads(visitor.locator("#sightings-map-markers").text_content())
    assert [(m["lat"], m["lon"], m["coarsened"]) for m in markers] == [(*COARSE, True)]
    assert visitor.locator("#map-note").is_visible()
    html = visitor.content()
    for exact in EXACT:
        assert exact not in html
    api = visitor.request.get(f"{base}/api/public/individuals/{known.pk}/").text()
    for exact in EXACT:
        assert exact not in api
    assert visitor.locator("#sighting-count").inner_text() == "4"
    assert all(
        alt
        for alt in visitor.locator(".gallery img").evaluate_all("images => images.map(i => i.alt)")
    )
    screenshot(visitor, "public-individual-page")

    # ... also at phone width, with nothing wider than the screen.
    phone = new_page(width=390, height=844)
    phone.goto(f"{base}/individuals/{known.pk}/")
    phone.wait_for_selector("#sightings-map path.sighting-marker")
    assert fits_phone_width(phone)
    screenshot(phone, "public-individual-page-phone")

    # 6. The volunteer's list now says who it was; experts still see the exact place.
    volunteer.goto(f"{base}/sightings/mine/")
    assert (
        f"Identified as {known}"
        in volunteer.locator(f"tr[data-sighting='{encounter.pk}']").inner_text()
    )
    screenshot(volunteer, "my-sightings-identified")
    reviewer.goto(f"{base}/individuals/{known.pk}/")
    assert f"{EXACT[0]}, {EXACT[1]}" in reviewer.locator("#timeline").inner_text()
