"""No dead ends, in Chromium: styled 403/404/500 pages with a way on, and merged individuals."""

from __future__ import annotations

from identification.services.decisions import individual_merge
from tests.e2e.conftest import fits_phone_width, sign_in
from tests.factories import IndividualFactory, SpeciesFactory, UserFactory, confirmed_sighting


def test_merged_individuals_old_address_opens_the_survivor(
    live_server, new_page, screenshot
) -> None:
    species = SpeciesFactory(name="Grevy zebra")
    kept = IndividualFactory(species=species, code="Z-KEPT")
    merged = IndividualFactory(species=species, code="Z-OLD")
    for individual in (kept, merged):
        confirmed_sighting(individual=individual)
    individual_merge(kept=kept, merged=merged, merged_by=UserFactory(role="expert"))

    page = new_page()
    page.goto(f"{live_server.url}/individuals/{merged.pk}/")
    page.wait_for_url(f"{live_server.url}/individuals/{kept.pk}/")
    assert "Z-KEPT" in page.locator("h1").inner_text()
    assert page.locator("#sighting-count").inner_text() == "2"
    screenshot(page, "merged-redirected")
    page.goto(f"{live_server.url}/species/")
    assert "1 individual," in page.locator(".cards").inner_text()


def test_error_pages_are_styled_and_lead_somewhere(
    live_server, new_page, screenshot, settings
) -> None:
    base = live_server.url
    SpeciesFactory(name="Snow leopard")

    # 404 raised by the app's own view, with DEBUG on as in `make demo`.
    settings.DEBUG = True
    for width, height, label in ((1280, 900, "desktop"), (390, 844, "phone")):
        page = new_page(width=width, height=height)
        response = page.goto(f"{base}/individuals/987654/")
        assert response.status == 404
        assert page.locator("#error-page h1").inner_text() == "We could not find that page"
        assert "No public individual has this number." in page.inner_text("#error-page")
        assert "URLconf" not in page.content()
        assert fits_phone_width(page) or label == "desktop"
        screenshot(page, f"404-{label}")
    page.get_by_role("link", name="All species").click()
    page.wait_for_url(f"{base}/species/")
    assert "Snow leopard" in page.inner_text("main")
    settings.DEBUG = False

    # 403: a volunteer opens the experts' dashboard.
    volunteer = UserFactory(role="volunteer", username="vol-403")
    page = new_page(width=390, height=844)
    sign_in(page, base, volunteer.username, "/sightings/mine/")
    response = page.goto(f"{base}/dashboard/")
    assert response.status == 403
    assert "vol-403" in page.inner_text("#error-page")
    assert page.locator("header nav").is_visible()
    assert fits_phone_width(page)
    screenshot(page, "403-phone")

    # 500: a view that fails.
    settings.ROOT_URLCONF = "tests.error_urls"
    page = new_page()
    response = page.goto(f"{base}/test-failure/")
    assert response.status == 500
    assert page.locator("#error-page[data-status='500']").is_visible()
    assert "on purpose" not in page.content()
    screenshot(page, "500-desktop")
    page.get_by_role("link", name="Home").first.click()
    page.wait_for_url(f"{base}/")
