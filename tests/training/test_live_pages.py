"""The species training page asks for news of its runs only while one is queued or running."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalogue.services.species import species_create
from identification.services.models import zero_shot_version
from tests.factories import UserFactory
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def test_runs_table_polls_while_a_run_is_active_and_stops_after(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="admin"))
    species = species_create(name="Otter")
    run = TrainingRun.objects.create(species=species, base_version=zero_shot_version())
    url = reverse("training-species", args=[species.pk])
    page = client.get(url).content.decode()
    assert 'id="run-table"' in page and 'hx-trigger="every 3s"' in page
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, progress=42)
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part
    assert "Running (42%)" in part and 'hx-trigger="every 3s"' in part
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED)
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Succeeded" in part and "hx-trigger" not in part
