"""Each role's main pages at desktop and phone width, saved under test-artifacts/e2e/.

The pages this suite changed (My sightings, a sighting, notifications and their settings)
must also fit a 390 px screen.
"""

from __future__ import annotations

from catalogue.models import Encounter
from notifications.models import Notification
from tests.e2e.conftest import fits_phone_width, sign_in
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
)

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def test_each_roles_main_pages_at_desktop_and_phone_width(
    live_server, new_page, screenshot
) -> None:
    species = SpeciesFactory(name="Leopard", sensitive=True)
    known = IndividualFactory(species=species, code="LEO-1", name="Spot")
    confirmed_sighting(individual=known)
    volunteer = UserFactory(role="volunteer", username="role-vol")
    mine = EncounterFactory(
        species=species, submitted_by=volunteer, status=Encounter.Status.AWAITING_REVIEW
    )
    AnnotationFactory(image=ImageFactory(encounter=mine))
    Notification.objects.create(
        user=volunteer,
        kind=Notification.Kind.CANDIDATES_READY,
        message=f"Our model suggested who the Leopard in your sighting #{mine.pk} may be.",
        link=f"/sightings/{mine.pk}/",
        encounter=mine,
    )
    pages = {
        None: ["/", "/species/", f"/individuals/{known.pk}/"],
        volunteer.username: [
            "/sightings/mine/",
            f"/sightings/{mine.pk}/",
            "/notifications/settings/",
            "/notifications/",
        ],
        UserFactory(role="expert", username="role-expert").username: ["/dashboard/"],
        UserFactory(role="admin", username="role-admin").username: [
            "/training/",
            f"/training/species/{species.pk}/",
        ],
    }
    must_fit = {"/sightings/mine/", f"/sightings/{mine.pk}/", "/notifications/"}
    must_fit.add("/notifications/settings/")
    base = live_server.url
    for username, paths in pages.items():
        for label, (width, height) in WIDTHS.items():
            page = new_page(width=width, height=height)
            if username:
                sign_in(page, base, username, paths[0])
            for path in paths:
                response = page.goto(f"{base}{path}")
                assert response.status == 200, path
                if label == "phone" and path in must_fit:
                    assert fits_phone_width(page), path
                name = path.strip("/").replace("/", "-") or "home"
                screenshot(page, f"{username or 'anonymous'}-{name}-{label}")
