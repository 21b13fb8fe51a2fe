"""The species training page asks for news of its runs only while one is queued or running."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import UserFactory
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def test_runs_table_polls_while_a_run_is_active_and_stops_after(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="admin"))
    species = species_register(name="Otter")
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


def test_species_index_polls_while_a_promoted_model_re_embeds(client) -> None:  # noqa: ANN001
    from identification.models import ModelVersion
    from identification.services.models import species_model_setting

    client.force_login(UserFactory(role="admin"))
    species = species_register(name="Badger")
    setting = species_model_setting(species=species)
    setting.pending_version = ModelVersion.objects.create(
        name="v1-badger", backbone="tf_efficientnet_lite0", weights="/x/model.pt", embedding_dim=8
    )
    setting.save()
    url = reverse("training-index")
    assert 'hx-trigger="every 3s"' in client.get(url).content.decode()
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and "v1-badger (re-embedding)" in part
    setting.pending_version = None
    setting.save()
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "re-embedding" not in part and "hx-trigger" not in part
