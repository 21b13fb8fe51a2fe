"""No dead ends: styled error pages, merged individuals' old URLs, counts without merged ones."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from catalogue import selectors
from catalogue.models import Individual
from identification.services.decisions import individual_merge
from tests.factories import IndividualFactory, SpeciesFactory, UserFactory, confirmed_sighting

pytestmark = pytest.mark.django_db


def _merged_pair() -> tuple[Individual, Individual]:
    species = SpeciesFactory(name="Zebra")
    kept, merged = IndividualFactory(species=species), IndividualFactory(species=species)
    for individual in (kept, merged):
        confirmed_sighting(individual=individual)
    individual_merge(kept=kept, merged=merged, merged_by=UserFactory(role="expert"))
    return kept, merged


def test_merged_individuals_old_page_redirects_to_the_survivor() -> None:
    kept, merged = _merged_pair()
    third = IndividualFactory(species=kept.species)
    individual_merge(kept=third, merged=kept, merged_by=UserFactory(role="expert"))
    response = Client().get(reverse("individual-detail", args=[merged.pk]))
    assert response.status_code == 302
    assert response.url == reverse("individual-detail", args=[third.pk])


def test_merged_into_a_private_individual_is_not_found() -> None:
    kept, merged = _merged_pair()
    Individual.objects.filter(pk=kept.pk).update(is_public=False)
    response = Client().get(reverse("individual-detail", args=[merged.pk]))
    assert response.status_code == 404


@pytest.mark.parametrize("debug", [False, True])
def test_the_apps_own_404_is_the_styled_page_even_with_debug(settings, debug: bool) -> None:  # noqa: ANN001
    settings.DEBUG = debug
    response = Client().get(reverse("individual-detail", args=[987654]))
    body = response.content.decode()
    assert response.status_code == 404
    assert 'id="error-page"' in body and "No public individual has this number." in body
    assert "Using the URLconf" not in body  # Django's technical page lists every URL
    assert 'href="/species/"' in body  # navigation out of the dead end


def test_403_is_styled_and_says_who_you_are() -> None:
    client = Client()
    client.force_login(UserFactory(role="volunteer", username="vic"))
    response = client.get(reverse("dashboard"))
    body = response.content.decode()
    assert response.status_code == 403
    assert 'id="error-page"' in body and "vic" in body and 'href="/species/"' in body


def test_500_is_styled(settings) -> None:  # noqa: ANN001
    settings.ROOT_URLCONF = "tests.error_urls"
    client = Client(raise_request_exception=False)
    response = client.get("/test-failure/")
    body = response.content.decode()
    assert response.status_code == 500
    assert 'data-status="500"' in body and 'href="/species/"' in body
    assert "a bug, on purpose" not in body


def _cell_numbers(html: str, species: str) -> list[int]:
    row = re.search(rf"{species}</a>.*?</tr>", html, re.S)
    assert row, html
    return [int(n) for n in re.findall(r"<td>(\d+)</td>", row.group(0))]


def test_counts_leave_out_merged_away_individuals() -> None:
    kept, _ = _merged_pair()
    admin = Client()
    admin.force_login(UserFactory(role="admin"))
    assert _cell_numbers(admin.get(reverse("training-index")).content.decode(), "Zebra")[0] == 1
    assert selectors.species_list().get(pk=kept.species_id).individual_count == 1  # the API's
    assert "1 individual," in Client().get(reverse("species-list")).content.decode()
    species_page = Client().get(reverse("species-detail", args=[kept.species.slug]))
    linked = set(re.findall(r'href="/individuals/(\d+)/"', species_page.content.decode()))
    assert linked == {str(kept.pk)}
