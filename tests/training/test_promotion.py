"""Promotion with judgement: the report's warnings and the confirmation they require."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identification.models import SpeciesModel
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import UserFactory
from training.models import TrainingRun
from training.selectors import promotion_warnings


def _report(
    species: str,
    *,
    individuals: int,
    images: int,
    top1: float = 0.5,
    queries: int | None = None,
    forgetting: dict | None = None,
) -> dict:
    target = {
        "new_species": True,
        "held_out_individuals": individuals,
        "held_out_images": images,
        "candidate": {
            "top1": top1,
            "top5": 1.0,
            "mAP": 0.6,
            "n_queries": queries if queries is not None else images,
        },
    }
    return {
        "species": species,
        "per_species": {species: target},
        "before": {"top1": 0.4, "top5": 1, "mAP": 0.5},
        "after": {"top1": top1, "top5": 1, "mAP": 0.6},
        "zero_shot": {"top1": 0.4, "top5": 1, "mAP": 0.5},
        "forgetting": forgetting or {},
        "recommended_ranking_method": "embedding",
        "candidate": {
            "model_path": "/nonexistent/model.pt",
            "backbone": "tf_efficientnet_lite0",
            "embedding_dim": 1280,
            "image_size": 192,
        },
    }


def test_small_held_out_set_is_flagged_with_the_standard_error_of_top1() -> None:
    assert promotion_warnings(report=_report("Zebra", individuals=40, images=200)) == []
    # 2 individuals, 5 photos, top-1 0.6: one standard error is sqrt(0.6 * 0.4 / 4) = 0.245.
    [warning] = promotion_warnings(report=_report("Zebra", individuals=2, images=5, top1=0.6))
    assert "2 individuals, 5 photos" in warning and "0.600 ± 0.245" in warning
    assert promotion_warnings(report=_report("Zebra", individuals=12, images=29))  # photos few


def test_every_other_species_losing_more_than_002_top1_is_flagged() -> None:
    forgetting = {
        "Goldfish": {"before": 0.688, "after": 0.438},  # the case
        "Lion": {"before": 0.25, "after": 0.229},  # loses 0.021
        "Cow": {"before": 0.50, "after": 0.49},  # loses 0.01: within tolerance
        "Dog": {"before": 0.30, "after": 0.45},
    }  # gains
    warnings = promotion_warnings(
        report=_report("Zebra", individuals=40, images=200, forgetting=forgetting)
    )
    assert [w.split()[0] for w in warnings] == ["Goldfish", "Lion"]
    assert "0.688 → 0.438" in warnings[0] and "keeps its own model version" in warnings[0]


@pytest.mark.django_db
def test_promote_with_warnings_needs_the_confirmation_in_the_post(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="admin"))
    species = species_register(name="Zebra")
    run = TrainingRun.objects.create(
        species=species,
        base_version=zero_shot_version(),
        status=TrainingRun.Status.SUCCEEDED,
        report=_report(
            "Zebra",
            individuals=2,
            images=5,
            forgetting={"Goldfish": {"before": 0.688, "after": 0.438}},
        ),
    )
    page = client.get(reverse("training-run", args=[run.pk]))
    assert b'id="promotion-warnings"' in page.content and b'name="confirm"' in page.content
    assert b"Goldfish would lose top-1" in page.content

    refused = client.post(reverse("training-run-promote", args=[run.pk]), follow=True)
    assert b"Confirm to promote" in refused.content
    assert SpeciesModel.objects.get(species=species).pending_version is None
    api = client.post(
        reverse("api-training-run-action", args=[run.pk, "promote"]),
        {},
        content_type="application/json",
    )
    assert api.status_code == 400 and "Confirm to promote" in api.json()["detail"]
    assert SpeciesModel.objects.get(species=species).pending_version is None

    client.post(reverse("training-run-promote", args=[run.pk]), {"confirm": "yes"})
    pending = SpeciesModel.objects.get(species=species).pending_version
    assert pending is not None and pending.name == f"run{run.pk}-zebra"


def test_a_switch_and_a_rollback_each_ask_for_the_ranking_method_to_be_chosen_again(db) -> None:  # noqa: ANN001
    from identification.models import CalibrationJob
    from identification.services.model_switch import species_model_switch_if_ready
    from training.services.promotion import model_promote, model_rollback

    species = species_register(name="Zebra")
    run = TrainingRun.objects.create(
        species=species,
        base_version=zero_shot_version(),
        status=TrainingRun.Status.SUCCEEDED,
        report=_report("Zebra", individuals=2, images=5),
    )
    model_promote(run=run, confirmed=True)
    assert not CalibrationJob.objects.exists()  # the old vectors still rank: nothing new yet

    assert species_model_switch_if_ready(species=species)  # no photo left to re-embed
    job = CalibrationJob.objects.get(species=species)
    assert job.state == "queued" and job.requested_because == f"switched to run{run.pk}-zebra"

    CalibrationJob.objects.filter(pk=species.pk).update(state="done")
    model_rollback(species=species)
    job.refresh_from_db()
    assert job.state == "queued" and job.requested_because == "rolled back"
