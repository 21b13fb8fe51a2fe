"""How many optimisation steps a run gets, and about how long that takes on the worker.

Steps grow with the data, photos and individuals alike, instead of a fixed 300; a time
budget the admin sets caps them. The duration is estimated from a measured rate: the
seconds per step and per cached photo of the latest succeeded runs of the same engine, or,
before any run, the rate of the onboarding benchmark on 2 shared CPU cores (BENCHMARKS.md,
"Training in the app"). Pure arithmetic: no database, no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

MIN_STEPS = 300  # the old fixed budget stays the floor: what small species were measured with
DRAWS_PER_PHOTO = 26  # 300 steps x 32 / 366 photos: passes the cow recipe study trained with
DRAWS_PER_INDIVIDUAL = 200  # each class centre sees ~200 draws, however few photos it has
MIN_CAPPED_STEPS = 60  # below this a run learns nothing; the estimate then exceeds the budget
REFERENCE_IMAGE_SIZE = 192
REFERENCE_BATCH_SIZE = 32
# Before any run has been measured: 300 steps of 32 at 192 px plus a cache of 95 photos took
# 421 s in the issue-5 onboarding benchmark (cow, cached, 2 shared cores); split as below.
ASSUMED_SECONDS_PER_STEP = 1.2
ASSUMED_CACHE_SECONDS_PER_PHOTO = 0.6


@dataclass(frozen=True)
class Rate:
    """Seconds per step (batch 32 at 192 px) and per cached photo (3 views at 192 px).

    Attributes:
        seconds_per_step: one optimisation step at the reference batch and image size.
        cache_seconds_per_photo: building the cached features of one photo.
        source: where the numbers come from, for the admin.
    """

    seconds_per_step: float
    cache_seconds_per_photo: float
    source: str


ASSUMED_RATE = Rate(
    ASSUMED_SECONDS_PER_STEP,
    ASSUMED_CACHE_SECONDS_PER_PHOTO,
    "assumed (no run measured yet on this installation)",
)


def rate_from_runs(trainings: list[dict[str, Any]]) -> Rate:
    """The median rate of finished runs, from their reports' ``training`` sections.

    Args:
        trainings: ``report["training"]`` of succeeded runs (newest first); each holds
            ``hyperparameters`` and ``metrics`` (``train_images_per_second``,
            ``cache_seconds``, ``n_images``).

    Returns:
        Their median rate, normalised to the reference batch and image size, or
        :data:`ASSUMED_RATE` when none measured one.
    """
    steps, caches = [], []
    for training in trainings:
        hp, metrics = training.get("hyperparameters") or {}, training.get("metrics") or {}
        scale = _pixel_scale(hp.get("image_size", REFERENCE_IMAGE_SIZE))
        if metrics.get("train_images_per_second"):
            per_image = 1.0 / metrics["train_images_per_second"]
            steps.append(per_image * REFERENCE_BATCH_SIZE / scale)
        if metrics.get("cache_seconds") and metrics.get("n_images"):
            views = hp.get("cached_views", 3) / 3
            caches.append(metrics["cache_seconds"] / metrics["n_images"] / scale / views)
    if not steps:
        return ASSUMED_RATE
    return Rate(
        _median(steps),
        _median(caches) if caches else ASSUMED_CACHE_SECONDS_PER_PHOTO,
        f"measured: median of the last {len(steps)} run(s) on this installation",
    )


@dataclass(frozen=True)
class BudgetPlan:
    """The steps a run gets and its estimated training time.

    Attributes:
        steps: optimisation steps (``epochs x samples_per_epoch / batch_size``).
        samples_per_epoch: class-balanced draws per epoch.
        wanted_steps: what the data asks for before the time budget.
        estimated_seconds: feature cache (cached engine) plus the steps, at ``rate``.
        cache_seconds: the feature-cache part of the estimate.
        capped: the time budget cut the steps.
        rate_source: where the rate comes from.
        photos: training photos the plan is for.
        individuals: training individuals the plan is for.
    """

    steps: int
    samples_per_epoch: int
    wanted_steps: int
    estimated_seconds: float
    cache_seconds: float
    capped: bool
    rate_source: str
    photos: int = 0
    individuals: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_samples_per_epoch(
        self, samples: int, *, hyperparameters: dict[str, Any]
    ) -> BudgetPlan:
        """The plan for draws set by hand: its steps, and the estimate scaled to them."""
        steps = hyperparameters["epochs"] * max(1, samples // hyperparameters["batch_size"])
        per_step = (self.estimated_seconds - self.cache_seconds) / max(1, self.steps)
        return replace(
            self,
            steps=steps,
            samples_per_epoch=samples,
            capped=False,
            estimated_seconds=round(self.cache_seconds + steps * per_step, 1),
        )


def wanted_steps(*, photos: int, individuals: int, batch_size: int) -> int:
    """Steps the data asks for: enough draws per photo and per individual, at least 300."""
    draws = max(
        MIN_STEPS * batch_size, DRAWS_PER_PHOTO * photos, DRAWS_PER_INDIVIDUAL * individuals
    )
    return math.ceil(draws / batch_size)


def budget_plan(
    *, photos: int, individuals: int, hyperparameters: dict[str, Any], rate: Rate, cached: bool
) -> BudgetPlan:
    """Steps and estimated seconds for a run on ``photos`` of ``individuals`` (training side).

    Args:
        photos: training photos (every species the run trains on).
        individuals: training individuals.
        hyperparameters: the run's ``epochs``, ``batch_size``, ``image_size``,
            ``cached_views`` and ``time_budget_minutes``.
        rate: the worker's measured (or assumed) rate.
        cached: the cached engine (a feature cache is built first).

    Returns:
        The plan; steps are a multiple of the epochs.
    """
    batch, epochs = hyperparameters["batch_size"], hyperparameters["epochs"]
    scale = _pixel_scale(hyperparameters["image_size"])
    per_step = rate.seconds_per_step * scale * batch / REFERENCE_BATCH_SIZE
    cache = (
        (rate.cache_seconds_per_photo * scale * photos * hyperparameters.get("cached_views", 3) / 3)
        if cached
        else 0.0
    )
    wanted = wanted_steps(photos=photos, individuals=individuals, batch_size=batch)
    budget = hyperparameters["time_budget_minutes"] * 60.0
    affordable = max(MIN_CAPPED_STEPS, math.floor((budget - cache) / per_step))
    capped = affordable < wanted
    # Whole epochs: rounded up to what the data wants, down to what the budget allows.
    steps_per_epoch = max(
        1, math.floor(affordable / epochs) if capped else math.ceil(wanted / epochs)
    )
    steps = steps_per_epoch * epochs
    return BudgetPlan(
        steps=steps,
        samples_per_epoch=steps_per_epoch * batch,
        wanted_steps=wanted,
        estimated_seconds=round(cache + steps * per_step, 1),
        cache_seconds=round(cache, 1),
        capped=capped,
        rate_source=rate.source,
        photos=photos,
        individuals=individuals,
    )


def _pixel_scale(image_size: int) -> float:
    """Time per image grows with its pixels."""
    return (image_size / REFERENCE_IMAGE_SIZE) ** 2


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
