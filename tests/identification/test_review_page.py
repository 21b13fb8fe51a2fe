"""The review page: "new individual" offered first when the animal is probably new, the
"which individual?" search, and a queue that refreshes itself only while work is pending."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identification.models import Identification
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    ranked_photo,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("probably_new", [True, False])
def test_new_individual_is_offered_first_when_the_animal_is_probably_new(
    client, probably_new
) -> None:  # noqa: ANN001
    species = SpeciesFactory(name="Chimpanzee")
    sighting = EncounterFactory(species=species)
    known = IndividualFactory(species=species)
    photo = ranked_photo(encounter=sighting, ranking=[(known, 0.3)], probably_new=probably_new)
    ranked_photo(encounter=sighting, ranking=[(known, 0.2)], probably_new=probably_new)
    client.force_login(UserFactory(role="expert"))
    page = client.get(reverse("review-annotation", args=[photo.pk])).content.decode()
    new_form, ranking = page.index('data-action="new"'), page.index('id="candidates"')
    assert (new_form < ranking) is probably_new
    assert ("offered-first" in page) is probably_new
    assert ("Probably a new individual" in page) is probably_new


def test_one_photo_not_flagged_keeps_the_candidates_first(client) -> None:  # noqa: ANN001
    species = SpeciesFactory(name="Chimpanzee")
    sighting = EncounterFactory(species=species)
    known = IndividualFactory(species=species)
    photo = ranked_photo(encounter=sighting, ranking=[(known, 0.3)], probably_new=True)
    ranked_photo(encounter=sighting, ranking=[(known, 0.9)], probably_new=False)
    client.force_login(UserFactory(role="expert"))
    page = client.get(reverse("review-annotation", args=[photo.pk])).content.decode()
    assert page.index('id="candidates"') < page.index('data-action="new"')


def test_which_individual_search_finds_the_species_known_individuals(client) -> None:  # noqa: ANN001
    species = SpeciesFactory(name="Chimpanzee")
    IndividualFactory(species=species, code="SAGU", name="Sagu")
    IndividualFactory(species=species, code="OTHER", name="Bili")
    IndividualFactory(code="SAGU-2", name="Sagu of another species")
    photo = ranked_photo(encounter=EncounterFactory(species=species), ranking=[])
    url = reverse("review-individual-search", args=[photo.pk])
    client.force_login(UserFactory(role="expert"))
    page = client.get(url, {"q": "sag"}).content.decode()
    assert "It is SAGU" in page and "OTHER" not in page and "SAGU-2" not in page
    assert "No chimpanzee" in client.get(url, {"q": "zzz"}).content.decode()
    client.force_login(UserFactory(role="volunteer"))
    assert "Vote: it is SAGU" in client.get(url, {"q": "Sagu"}).content.decode()


def test_the_queue_refreshes_itself_only_while_photos_are_pending(client) -> None:  # noqa: ANN001
    species = SpeciesFactory(name="Lynx")
    client.force_login(UserFactory(role="volunteer"))
    queued = Identification.objects.create(
        annotation=AnnotationFactory(image__encounter__species=species),
        state=Identification.State.QUEUED,
    )
    page = client.get(reverse("review-queue")).content.decode()
    assert 'hx-trigger="every 3s"' in page and "The model is working on 1 photo" in page
    queued.state = Identification.State.READY
    queued.save()
    partial = client.get(reverse("review-queue"), HTTP_HX_REQUEST="true").content.decode()
    assert partial.startswith('<div id="queue-list"') and "<html" not in partial
    assert "hx-trigger" not in partial and "sighting #" in partial
