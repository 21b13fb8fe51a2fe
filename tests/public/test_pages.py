"""The public site: what anonymous visitors see, and what they must never see."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.urls import reverse

from catalogue.models import Annotation
from tests.factories import (
    AnnotationFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
)

pytestmark = pytest.mark.django_db

EXACT = (51.23456, -0.98765)


def when(day: int) -> dt.datetime:
    return dt.datetime(2025, 3, day, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def lynx():
    """A sensitive species with one public individual seen twice at an exact place."""
    species = SpeciesFactory(name="Lynx", sensitive=True)
    individual = IndividualFactory(species=species, code="LX-07", name="Mira")
    confirmed_sighting(
        individual=individual, observed_at=when(1), latitude=EXACT[0], longitude=EXACT[1]
    )
    confirmed_sighting(
        individual=individual,
        observed_at=when(20),
        latitude=EXACT[0] + 0.01,
        longitude=EXACT[1] - 0.01,
        source=Annotation.IdentitySource.IMPORT,
    )
    return individual


def test_species_list_counts_public_individuals_and_confirmed_sightings(client, lynx) -> None:
    IndividualFactory(species=lynx.species, code="HIDDEN", is_public=False)
    unconfirmed = ImageFactory(encounter__species=lynx.species)
    AnnotationFactory(image=unconfirmed)  # not identified: not a public sighting
    response = client.get(reverse("species-list"))
    assert response.status_code == 200
    text = response.content.decode()
    assert "1 individual," in text and "2 confirmed sightings" in text


def test_individual_page_shows_timeline_first_and_last_seen_and_gallery(client, lynx) -> None:
    response = client.get(reverse("individual-detail", args=[lynx.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert "LX-07 (Mira)" in text
    assert "1 Mar 2025" in text and "20 Mar 2025" in text
    assert re.search(r'id="sighting-count">2<', text)
    assert text.count("<img") == 2
    assert 'alt="LX-07 (Mira) (Lynx), photographed 1 Mar 2025"' in text
    markers = json.loads(
        re.search(
            r'<script id="sightings-map-markers" type="application/json">(.*?)</script>',
            text,
            re.DOTALL,
        ).group(1)
    )
    assert [(m["lat"], m["lon"], m["coarsened"]) for m in markers] == [
        (51.2, -1.0, True),
        (51.2, -1.0, True),
    ]
    assert "vendor/leaflet/leaflet.js" in text and "cdn" not in text.lower()


def test_unconfirmed_merged_and_private_animals_stay_off_the_public_site(client, lynx) -> None:
    species = lynx.species
    private = IndividualFactory(species=species, code="PRIV-1", is_public=False)
    confirmed_sighting(individual=private)
    merged = IndividualFactory(species=species, code="MERGED-1", merged_into=lynx)
    # A volunteer's guess is not a confirmation: no identity_source.
    AnnotationFactory(
        image=ImageFactory(encounter__species=species), individual=lynx, identity_source=""
    )
    assert client.get(reverse("individual-detail", args=[private.pk])).status_code == 404
    # A merged-away individual's old address leads to the one it was merged into.
    moved = client.get(reverse("individual-detail", args=[merged.pk]))
    assert moved.status_code == 302 and moved.url == reverse("individual-detail", args=[lynx.pk])
    assert "MERGED-1" not in client.get(moved.url).content.decode()
    pages = [
        client.get(reverse(name)).content.decode() for name in ("species-list", "recent-sightings")
    ]
    pages.append(client.get(reverse("species-detail", args=[species.slug])).content.decode())
    pages.append(client.get(reverse("search"), {"q": "1"}).content.decode())
    for text in pages:
        assert "PRIV-1" not in text and "MERGED-1" not in text
    history = client.get(reverse("api-public-individual", args=[lynx.pk])).json()
    assert history["sighting_count"] == 2


def test_search_finds_by_code_or_name_and_explains_an_empty_result(client, lynx) -> None:
    assert "LX-07" in client.get(reverse("search"), {"q": "lx-0"}).content.decode()
    assert "LX-07" in client.get(reverse("search"), {"q": "mira"}).content.decode()
    empty = client.get(reverse("search"), {"q": "nobody"}).content.decode()
    assert "No public individual has a code or name containing" in empty
    partial = client.get(reverse("search"), {"q": "mira"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and "LX-07" in partial


def test_recent_feed_lists_newest_sightings_first(client, lynx) -> None:
    fox = IndividualFactory(species=SpeciesFactory(name="Fox"), code="FOX-1")
    confirmed_sighting(individual=fox, observed_at=when(25), latitude=48.8566, longitude=2.3522)
    text = client.get(reverse("recent-sightings")).content.decode()
    assert text.index("FOX-1") < text.index("LX-07")
    assert "48.8566, 2.3522" in text  # not sensitive: exact


def test_empty_site_says_so(client) -> None:
    assert "No species yet" in client.get(reverse("species-list")).content.decode()
    assert "No confirmed sightings yet" in client.get(reverse("recent-sightings")).content.decode()


def _public_responses(client, individual) -> dict[str, str]:
    urls = [
        reverse("home"),
        reverse("species-list"),
        reverse("recent-sightings"),
        reverse("species-detail", args=[individual.species.slug]),
        reverse("individual-detail", args=[individual.pk]),
        reverse("search") + "?q=LX",
        reverse("api-public-individual", args=[individual.pk]),
        reverse("api-public-recent"),
        reverse("api-species"),
        reverse("export-public-encounters"),
        reverse("export-public-encounters") + f"?species={individual.species.slug}",
    ]
    responses = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        responses[url] = response.content.decode()
    return responses


@pytest.mark.parametrize("role", [None, "volunteer"])
def test_no_public_page_json_or_export_reveals_a_sensitive_exact_place(client, lynx, role) -> None:
    if role:
        client.force_login(UserFactory(role=role))
    exact_fragments = ("51.234", "51.244", "0.987", "0.997")
    for url, body in _public_responses(client, lynx).items():
        for fragment in exact_fragments:
            assert fragment not in body, f"{url} shows {fragment}"
    api = client.get(reverse("api-public-individual", args=[lynx.pk])).json()
    assert {
        (s["latitude"], s["longitude"], s["coordinates_coarsened"]) for s in api["sightings"]
    } == {(51.2, -1.0, True)}


def test_volunteers_own_sightings_api_coarsens_sensitive_places(client, lynx) -> None:
    volunteer = UserFactory(role="volunteer")
    confirmed_sighting(individual=lynx, submitted_by=volunteer)
    client.force_login(volunteer)
    body = client.get(reverse("api-sightings")).json()
    assert [(s["latitude"], s["longitude"], s["coordinates_coarsened"]) for s in body] == [
        (51.2, -1.0, True)
    ]


@pytest.mark.parametrize("role", ["expert", "admin"])
def test_experts_and_admins_see_exact_places(client, lynx, role) -> None:
    client.force_login(UserFactory(role=role))
    text = client.get(reverse("individual-detail", args=[lynx.pk])).content.decode()
    assert "51.23456" in text and "-0.98765" in text
    api = client.get(reverse("api-public-individual", args=[lynx.pk])).json()
    assert api["sightings"][0]["latitude"] == 51.23456


def test_volunteers_own_sighting_page_rounds_a_sensitive_place(client, lynx) -> None:
    volunteer = UserFactory(role="volunteer")
    sighting = confirmed_sighting(individual=lynx, submitted_by=volunteer).image.encounter
    client.force_login(volunteer)
    text = client.get(reverse("sighting-detail", args=[sighting.pk])).content.decode()
    assert "near 51.2, -1.0" in text and "51.234" not in text
