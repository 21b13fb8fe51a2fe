"""The experts' dashboard: queues, decisions, disagreements, models per species."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identification.models import Identification, IdentityDecision, Vote
from identification.services.models import species_model_setting
from tests.factories import AnnotationFactory, IndividualFactory, SpeciesFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_dashboard_shows_queues_decisions_disagreements_and_models(client) -> None:
    lynx, wolf = SpeciesFactory(name="Lynx"), SpeciesFactory(name="Wolf")
    for _ in range(3):
        Identification.objects.create(
            annotation=AnnotationFactory(image__encounter__species=lynx),
            state=Identification.State.READY,
        )
    Identification.objects.create(
        annotation=AnnotationFactory(image__encounter__species=lynx),
        state=Identification.State.QUEUED,
    )  # not ready: not queued
    species_model_setting(species=wolf)
    expert, volunteer = (
        UserFactory(role="expert", username="erin"),
        UserFactory(role="volunteer", username="vic"),
    )
    decided, other = (IndividualFactory(species=lynx, code=c) for c in ("LX-1", "LX-2"))
    annotation = AnnotationFactory(
        image__encounter__species=lynx, individual=decided, identity_source="expert"
    )
    IdentityDecision.objects.create(
        annotation=annotation,
        verdict="same",
        candidate=decided,
        individual_after=decided,
        decided_by=expert,
    )
    Vote.objects.create(annotation=annotation, individual=other, voter=volunteer, same=True)
    Vote.objects.create(annotation=annotation, individual=decided, voter=expert, same=True)

    client.force_login(expert)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    rows = {row.species.name: row for row in response.context["species_rows"]}
    assert rows["Lynx"].queue_size == 3 and rows["Wolf"].queue_size == 0
    assert rows["Wolf"].model_name == "v0-imagenet-lite0-gem"
    assert rows["Lynx"].model_name.endswith("(default)")
    assert [d.candidate.code for d in response.context["decisions"]] == ["LX-1"]
    disagreements = list(response.context["disagreements"])
    assert [(v.voter.username, v.individual.code) for v in disagreements] == [("vic", "LX-2")]
    text = response.content.decode()
    assert "same as LX-2" in text and "Same individual" in text


def test_empty_dashboard_explains_itself(client) -> None:
    client.force_login(UserFactory(role="admin"))
    text = client.get(reverse("dashboard")).content.decode()
    assert "No decisions yet" in text and "No disagreements" in text
