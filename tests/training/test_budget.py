"""The training budget: steps that grow with the data, capped by a time the admin sets."""

from __future__ import annotations

import pytest

from training.budget import ASSUMED_RATE, MIN_STEPS, Rate, budget_plan, rate_from_runs

HP = {
    "epochs": 6,
    "batch_size": 32,
    "image_size": 192,
    "cached_views": 3,
    "time_budget_minutes": 60,
}


def test_steps_grow_with_photos_and_individuals_from_the_old_floor() -> None:
    rate = Rate(1.0, 0.5, "test")
    small = budget_plan(photos=100, individuals=20, hyperparameters=HP, rate=rate, cached=True)
    assert small.steps == MIN_STEPS and not small.capped  # ~20 individuals: as before
    more_photos = budget_plan(
        photos=1421, individuals=20, hyperparameters=HP, rate=rate, cached=True
    )
    more_individuals = budget_plan(
        photos=400, individuals=165, hyperparameters=HP, rate=rate, cached=True
    )
    assert more_photos.steps > small.steps and more_individuals.steps > small.steps
    assert more_photos.steps == 1158  # ceil(26 * 1421 / 32) = 1155, rounded up to 6 epochs
    for plan in (small, more_photos, more_individuals):
        assert plan.steps % HP["epochs"] == 0
        assert plan.samples_per_epoch == plan.steps // HP["epochs"] * HP["batch_size"]


def test_estimate_is_cache_plus_steps_at_the_measured_rate_and_the_budget_caps_it() -> None:
    rate = Rate(seconds_per_step=0.5, cache_seconds_per_photo=0.2, source="test")
    plan = budget_plan(photos=100, individuals=20, hyperparameters=HP, rate=rate, cached=True)
    assert plan.estimated_seconds == pytest.approx(100 * 0.2 + 300 * 0.5)
    # Twice the side: four times the pixels, four times the time per photo and per step.
    large = budget_plan(
        photos=100,
        individuals=20,
        cached=True,
        rate=rate,
        hyperparameters={**HP, "image_size": 384},
    )
    assert large.estimated_seconds == pytest.approx(4 * plan.estimated_seconds)
    # The full engine builds no cache.
    full = budget_plan(photos=100, individuals=20, hyperparameters=HP, rate=rate, cached=False)
    assert full.estimated_seconds == pytest.approx(300 * 0.5)
    # 1,421 photos want 1,158 steps (599 s with the cache); a 5-minute budget allows
    # (300 - 284.2) / 0.5 = 31 steps, raised to the floor of 60.
    capped = budget_plan(
        photos=1421,
        individuals=165,
        cached=True,
        rate=rate,
        hyperparameters={**HP, "time_budget_minutes": 5},
    )
    assert capped.capped and capped.wanted_steps == 1155 and capped.steps == 60
    ten = budget_plan(
        photos=1421,
        individuals=165,
        cached=True,
        rate=rate,
        hyperparameters={**HP, "time_budget_minutes": 10},
    )
    assert ten.capped and ten.steps == 630  # floor((600 - 284.2) / 0.5) = 631 -> 105 x 6
    assert ten.estimated_seconds <= 600


def test_rate_is_measured_from_previous_runs_normalised_to_the_reference() -> None:
    assert rate_from_runs([]) is ASSUMED_RATE
    runs = [
        # 64 images/s at 192 px: 0.5 s per step of 32; cache 30 s for 100 photos.
        {
            "hyperparameters": {"image_size": 192, "cached_views": 3},
            "metrics": {"train_images_per_second": 64.0, "cache_seconds": 30.0, "n_images": 100},
        },
        # At 384 px everything takes 4x: normalised, the same rate.
        {
            "hyperparameters": {"image_size": 384, "cached_views": 3},
            "metrics": {"train_images_per_second": 16.0, "cache_seconds": 120.0, "n_images": 100},
        },
        {
            "hyperparameters": {"image_size": 192, "cached_views": 3},
            "metrics": {"train_images_per_second": 32.0, "cache_seconds": 60.0, "n_images": 100},
        },
    ]
    rate = rate_from_runs(runs)
    assert rate.seconds_per_step == pytest.approx(0.5)  # median of 0.5, 0.5, 1.0
    assert rate.cache_seconds_per_photo == pytest.approx(0.3)
    assert "3 run(s)" in rate.source


@pytest.mark.django_db
def test_a_run_gets_the_planned_steps_and_the_species_page_shows_the_estimate(
    client, small_chimp
) -> None:  # noqa: ANN001
    from django.urls import reverse

    from identification.services.models import zero_shot_version
    from tests.factories import UserFactory
    from training.models import TrainingRun
    from training.services.runs import training_run_start

    run = training_run_start(species=small_chimp, dispatch=False)
    budget = run.hyperparameters["budget"]
    assert budget["steps"] == MIN_STEPS and budget["rate_source"] == ASSUMED_RATE.source
    assert run.hyperparameters["samples_per_epoch"] == budget["samples_per_epoch"] == 1600
    explicit = training_run_start(
        species=small_chimp, dispatch=False, hyperparameters={"samples_per_epoch": 64}
    )
    assert explicit.hyperparameters["samples_per_epoch"] == 64  # the admin's value wins
    assert explicit.hyperparameters["budget"]["steps"] == 6 * 2  # 6 epochs of 64 // 32 steps

    # A finished run on this installation: its measured rate replaces the assumption.
    TrainingRun.objects.create(
        species=small_chimp,
        base_version=zero_shot_version(),
        engine_mode="cached",
        status=TrainingRun.Status.SUCCEEDED,
        report={
            "training": {
                "hyperparameters": {"image_size": 192, "cached_views": 3},
                "metrics": {"train_images_per_second": 64.0, "cache_seconds": 10.0, "n_images": 50},
            }
        },
    )
    measured = training_run_start(species=small_chimp, engine_mode="cached", dispatch=False)
    assert measured.hyperparameters["budget"]["rate_source"].startswith("measured")
    # 4 chimps x 3 photos, 30 % held out: 8 photos of 3 individuals train.
    plan = measured.hyperparameters["budget"]
    assert (plan["photos"], plan["individuals"]) == (8, 3)
    # 300 steps at 0.5 s, plus the cache of those 8 photos at 0.2 s each.
    assert plan["estimated_seconds"] == pytest.approx(300 * 0.5 + 8 * 0.2)
    client.force_login(UserFactory(role="admin"))
    page = client.get(reverse("training-species", args=[small_chimp.pk]))
    assert b'id="budget"' in page.content and b"300 steps" in page.content
