"""Who may open which page: anonymous visitors, volunteers, experts and admins."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import IndividualFactory, SpeciesFactory, UserFactory, confirmed_sighting

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "volunteer", "expert", "admin")
OK, LOGIN, FORBIDDEN = 200, 302, 403


@pytest.fixture
def urls() -> dict[str, str]:
    individual = IndividualFactory(species=SpeciesFactory(name="Lynx", sensitive=True), code="L-1")
    confirmed_sighting(individual=individual)
    return {
        "home": reverse("home"),
        "species": reverse("species-list"),
        "species-detail": reverse("species-detail", args=["lynx"]),
        "individual": reverse("individual-detail", args=[individual.pk]),
        "search": reverse("search") + "?q=L",
        "recent": reverse("recent-sightings"),
        "api-individual": reverse("api-public-individual", args=[individual.pk]),
        "api-recent": reverse("api-public-recent"),
        "public-export": reverse("export-public-encounters"),
        "sighting-create": reverse("sighting-create"),
        "my-sightings": reverse("my-sightings"),
        "dashboard": reverse("dashboard"),
        "exports": reverse("exports"),
        "export-sightings": reverse("export-encounters"),
        "export-capture-history": reverse("export-capture-history") + "?species=lynx&days=30",
    }


EXPECTED = {
    # page: anonymous, volunteer, expert, admin
    "home": (OK, OK, OK, OK),
    "species": (OK, OK, OK, OK),
    "species-detail": (OK, OK, OK, OK),
    "individual": (OK, OK, OK, OK),
    "search": (OK, OK, OK, OK),
    "recent": (OK, OK, OK, OK),
    "api-individual": (OK, OK, OK, OK),
    "api-recent": (OK, OK, OK, OK),
    "public-export": (OK, OK, OK, OK),
    "sighting-create": (LOGIN, OK, OK, OK),
    "my-sightings": (LOGIN, OK, OK, OK),
    "dashboard": (LOGIN, FORBIDDEN, OK, OK),
    "exports": (LOGIN, FORBIDDEN, OK, OK),
    "export-sightings": (LOGIN, FORBIDDEN, OK, OK),
    # The fixture's sighting has a date, so the export succeeds for those allowed.
    "export-capture-history": (LOGIN, FORBIDDEN, OK, OK),
}


@pytest.mark.parametrize("role", ROLES)
def test_every_page_answers_each_role_as_expected(client, urls, role) -> None:
    if role != "anonymous":
        client.force_login(UserFactory(role=role))
    got = {name: client.get(url).status_code for name, url in urls.items()}
    want = {name: statuses[ROLES.index(role)] for name, statuses in EXPECTED.items()}
    assert got == want


def test_anonymous_visitors_are_sent_to_sign_in_for_expert_pages(client, urls) -> None:
    response = client.get(urls["dashboard"])
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role", ROLES)
def test_navigation_offers_only_what_the_role_may_use(client, role) -> None:
    if role != "anonymous":
        client.force_login(UserFactory(role=role))
    text = client.get(reverse("species-list")).content.decode()
    assert ('href="/dashboard/"' in text) == (role in ("expert", "admin"))
    assert ('href="/sightings/mine/"' in text) == (role != "anonymous")
    assert 'role="search"' in text
