"""A volunteer's own sightings, each with what became of it, and their contributions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalogue.models import Encounter
from identification.models import IdentityDecision
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_my_sightings_shows_each_status_and_counts_contributions(client) -> None:
    volunteer, expert = UserFactory(role="volunteer"), UserFactory(role="expert")
    species = SpeciesFactory(name="Lynx")
    status = Encounter.Status

    def sighting(state: str, individual=None, verdict: str | None = None) -> Encounter:
        encounter = EncounterFactory(species=species, submitted_by=volunteer, status=state)
        annotation = AnnotationFactory(
            image=ImageFactory(encounter=encounter),
            individual=individual,
            identity_source="expert" if individual else "",
        )
        if verdict:
            IdentityDecision.objects.create(
                annotation=annotation,
                verdict=verdict,
                candidate=individual,
                individual_after=individual,
                decided_by=expert,
            )
        return encounter

    processing = sighting(status.PROCESSING)
    ready = sighting(status.AWAITING_REVIEW)
    known = sighting(status.IDENTIFIED, IndividualFactory(species=species, code="LX-1"), "same")
    new = sighting(status.IDENTIFIED, IndividualFactory(species=species, code="LX-9"), "new")
    EncounterFactory(species=species)  # someone else's

    client.force_login(volunteer)
    response = client.get(reverse("my-sightings"))
    statuses = {row.encounter.pk: row.status for row in response.context["sightings"]}
    assert statuses == {
        processing.pk: "Processing",
        ready.pk: "Candidates ready",
        known.pk: "Identified as LX-1",
        new.pk: "New individual LX-9",
    }
    contributions = response.context["contributions"]
    assert (contributions.sightings, contributions.photos, contributions.identified) == (4, 4, 2)
    text = response.content.decode()
    assert "4</strong> sightings" in text and "Identified as LX-1" in text


def test_volunteer_without_sightings_is_invited_to_report_one(client) -> None:
    client.force_login(UserFactory(role="volunteer"))
    assert (
        "You have not reported any sightings yet"
        in client.get(reverse("my-sightings")).content.decode()
    )


def test_my_sightings_asks_for_news_only_while_something_is_pending(client) -> None:  # noqa: ANN001
    volunteer = UserFactory(role="volunteer")
    client.force_login(volunteer)
    encounter = EncounterFactory(submitted_by=volunteer, status=Encounter.Status.PROCESSING)
    url = reverse("my-sightings")
    assert 'hx-trigger="every 3s"' in client.get(url).content.decode()
    Encounter.objects.filter(pk=encounter.pk).update(status=Encounter.Status.AWAITING_REVIEW)
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'hx-trigger="every 20s"' in part
    assert "Candidates ready" in part
    Encounter.objects.filter(pk=encounter.pk).update(status=Encounter.Status.IDENTIFIED)
    assert "hx-trigger" not in client.get(url, HTTP_HX_REQUEST="true").content.decode()
