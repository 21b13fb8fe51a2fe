"""Browser checks of the upload page's drag and drop and map pin, and of live search."""

from __future__ import annotations

import base64

from catalogue.models import Encounter
from tests.factories import IndividualFactory, SpeciesFactory, UserFactory, confirmed_sighting
from tests.helpers import jpeg_bytes

DROP_FILES = """([dropzone, files]) => {
  const transfer = new DataTransfer();
  for (const [name, type, data] of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type }));
  }
  const target = document.querySelector(dropzone);
  for (const kind of ["dragenter", "dragover", "drop"]) {
    const event = { dataTransfer: transfer, bubbles: true, cancelable: true };
    target.dispatchEvent(new DragEvent(kind, event));
  }
}"""


def test_several_photos_dropped_on_the_form_are_all_uploaded(
    live_server, new_page, screenshot
) -> None:
    SpeciesFactory(name="Lynx")
    volunteer = UserFactory(role="volunteer", username="dropper")
    page = new_page(width=390, height=844)  # a phone
    page.goto(f"{live_server.url}/accounts/login/?next=/sightings/new/")
    page.fill("#id_username", volunteer.username)
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/sightings/new/")

    photos = [
        (
            f"lynx-{n}.jpg",
            "image/jpeg",
            base64.b64encode(jpeg_bytes(size=(80, 60), color=(40 * n, 90, 20))).decode(),
        )
        for n in range(1, 3)
    ]
    page.evaluate(DROP_FILES, ["#dropzone", [*photos, ("notes.txt", "text/plain", "aGk=")]])
    assert page.locator("#drop-status").inner_text() == (
        "2 photo(s) chosen. 1 file(s) were not images and were left out."
    )
    assert page.locator("#previews .preview").count() == 2
    page.select_option("#id_species", label="Lynx")
    page.fill("#id_observed_at", "2025-07-02T08:15")
    page.fill("#id_latitude", "46.5")
    page.fill("#id_longitude", "7.25")
    page.locator("#id_longitude").dispatch_event("change")
    assert page.locator("#location-map .location-pin").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "dropped-photos-phone")
    page.get_by_role("button", name="Submit sighting").click()
    page.wait_for_selector("text=Thank you! Sighting")
    encounter = Encounter.objects.get(submitted_by=volunteer)
    assert sorted(encounter.images.values_list("original_filename", flat=True)) == [
        "lynx-1.jpg",
        "lynx-2.jpg",
    ]
    assert (encounter.latitude, encounter.longitude) == (46.5, 7.25)


def test_upload_without_a_date_shows_a_clear_error(live_server, new_page) -> None:
    SpeciesFactory(name="Lynx")
    volunteer = UserFactory(role="volunteer", username="nodate")
    page = new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/sightings/new/")
    page.fill("#id_username", volunteer.username)
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/sightings/new/")
    page.select_option("#id_species", label="Lynx")
    page.set_input_files(
        "#id_photos", files=[{"name": "a.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes()}]
    )
    page.get_by_role("button", name="Submit sighting").click()
    assert "The photos carry no date" in page.locator("[role=alert]").first.inner_text()


def test_search_updates_as_you_type(live_server, new_page, screenshot) -> None:
    # Public: an individual is searchable once it has a confirmed photo.
    confirmed_sighting(
        individual=IndividualFactory(species=SpeciesFactory(name="Lynx"), code="LX-07", name="Mira")
    )
    page = new_page()
    page.goto(f"{live_server.url}/search/")
    page.locator("#q").press_sequentially("mir", delay=30)
    page.wait_for_selector("#search-results a:has-text('LX-07')")
    assert "/search/?q=mir" in page.url
    screenshot(page, "search")
    page.locator("#q").fill("zzz")
    page.locator("#q").dispatch_event("input")
    page.wait_for_selector("#search-results :text('No public individual')")
