"""Reads of training: runs, species pages, chart data."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from catalogue.models import Annotation, Species
from identification.models import SpeciesModel
from identification.selectors.species_models import embedding_progress
from training.budget import BudgetPlan, budget_plan, rate_from_runs
from training.models import DatasetImport, TrainingRun

FORGETTING_TOLERANCE = 0.02  # top-1 another species may lose before the report flags it
# Below either size a held-out top-1 is too uncertain to promote on without a second look.
SMALL_HELD_OUT_INDIVIDUALS = 10
SMALL_HELD_OUT_IMAGES = 30


def training_run_list(*, species: Species | None = None) -> QuerySet[TrainingRun]:
    runs = TrainingRun.objects.select_related("species", "base_version", "candidate_version")
    return runs.filter(species=species) if species is not None else runs


def dataset_import_list(*, species: Species) -> QuerySet[DatasetImport]:
    """A species' imports, newest first, with who started each."""
    return DatasetImport.objects.filter(species=species).select_related("started_by")


def dataset_import_embedding_progress(*, job: DatasetImport) -> dict[str, int] | None:
    """The species' embedding progress under its active model, while the import embeds."""
    if job.state != DatasetImport.State.EMBEDDING or job.species_id is None:
        return None
    setting = SpeciesModel.objects.filter(species_id=job.species_id).first()
    if setting is None:
        return None
    return embedding_progress(species_id=job.species_id, version_id=setting.model_version_id)


def species_overview_list() -> list[dict[str, Any]]:
    """Every species with its active model and counts, for the training index page."""
    from django.db.models import Count, Q

    species = Species.objects.annotate(
        # A merged-away individual lives on in its survivor; counting both counts one twice.
        n_individuals=Count(
            "individuals", filter=Q(individuals__merged_into__isnull=True), distinct=True
        ),
        n_identified=Count(
            "annotations", filter=Q(annotations__individual__isnull=False), distinct=True
        ),
    ).order_by("name")
    settings = {
        s.species_id: s
        for s in SpeciesModel.objects.select_related("model_version", "pending_version")
    }
    return [{"species": s, "setting": settings.get(s.pk)} for s in species]


def loss_chart(*, run: TrainingRun, width: int = 600, height: int = 160) -> dict[str, Any]:
    """Polyline points (SVG user units) for the loss and held-out top-1 curves of a run."""
    points = [p for p in run.history or [] if p.get("loss") is not None]
    top1 = [p for p in run.history or [] if p.get("validation_top1") is not None]
    if not points:
        return {"width": width, "height": height, "loss": "", "top1": "", "max_loss": None}
    last_step = max(p["step"] for p in points) or 1
    max_loss = max(p["loss"] for p in points) or 1.0

    def x(step: int) -> float:
        return round(width * step / last_step, 1)

    loss = " ".join(
        f"{x(p['step'])},{round(height * (1 - p['loss'] / max_loss), 1)}" for p in points
    )
    accuracy = " ".join(
        f"{x(p['step'])},{round(height * (1 - p['validation_top1']), 1)}" for p in top1
    )
    return {
        "width": width,
        "height": height,
        "loss": loss,
        "top1": accuracy,
        "max_loss": round(max_loss, 3),
        "last_step": last_step,
    }


def top1_lost(*, before: float | None, after: float | None) -> bool:
    """Whether a species loses more than ``FORGETTING_TOLERANCE`` top-1 with the candidate."""
    return before is not None and after is not None and after < before - FORGETTING_TOLERANCE


def promotion_warnings(*, report: dict[str, Any]) -> list[str]:
    """What an admin should weigh before promoting a run's model (empty: nothing).

    A small held-out set (fewer than 10 individuals or 30 photos) gets its top-1 standard
    error; every other species that would lose more than 0.02 top-1 with this model is named.
    Works on reports of every version (sizes and errors are recomputed when absent).
    """
    from reid.metrics import rate_standard_error  # numpy only, no torch

    warnings = []
    target = (report.get("per_species") or {}).get(report.get("species"), {})
    individuals, images = target.get("held_out_individuals"), target.get("held_out_images")
    if individuals is not None and (
        individuals < SMALL_HELD_OUT_INDIVIDUALS or images < SMALL_HELD_OUT_IMAGES
    ):
        candidate = target.get("candidate", {})
        se = rate_standard_error(candidate.get("top1", 0.0), candidate.get("n_queries", 0))
        uncertainty = f" ± {se:.3f} (one standard error)" if se == se else ""
        warnings.append(
            f"The held-out set is small ({individuals} individuals, {images} photos): "
            f"candidate top-1 {candidate.get('top1', 0):.3f}{uncertainty}. A difference "
            "smaller than about twice that may be chance."
        )
    for name, change in sorted((report.get("forgetting") or {}).items()):
        if top1_lost(before=change.get("before"), after=change.get("after")):
            warnings.append(
                f"{name} would lose top-1 with this model ({change['before']:.3f} → "
                f"{change['after']:.3f}). Promotion switches only {report.get('species')}; "
                f"{name} keeps its own model version."
            )
    return warnings


def training_budget_estimate(
    *, species: Species, mode: str, engine_mode: str, hyperparameters: dict[str, Any]
) -> BudgetPlan:
    """Steps and "about N minutes on this worker" for a run of the species, as it stands now.

    The training side is estimated from the identified photos (individuals with 2+ photos,
    the run's caps, minus the held-out share; in ``with-original-data`` mode plus each other
    species' capped share). The rate is that of the latest succeeded runs of the engine.
    """
    from django.db.models import Count, Q

    hp = hyperparameters
    engine = engine_mode or "cached"  # a CPU worker unless one says otherwise
    keep = 1 - hp["validation_fraction"]
    photos = individuals = 0.0
    rows = (
        Annotation.objects.filter(individual__isnull=False)
        .filter(Q(species=species) if mode == TrainingRun.Mode.NEW_DATA_ONLY else Q())
        .values("species_id", "individual_id")
        .annotate(n=Count("pk"))
        .filter(n__gte=2)
    )
    per_species: dict[int, list[int]] = {}
    for row in rows:  # photos per usable individual, per species
        per_species.setdefault(row["species_id"], []).append(row["n"])
    for species_id, counts in per_species.items():
        own = species_id == species.pk
        cap_individuals = hp["max_individuals"] if own else hp["original_max_individuals"]
        cap_images = hp["images_per_individual"] if own else hp["original_images_per_individual"]
        kept = sorted(counts, reverse=True)[:cap_individuals] if cap_individuals else counts
        individuals += len(kept) * keep
        photos += sum(min(n, cap_images) if cap_images else n for n in kept) * keep
    trainings = [
        run.report["training"]
        for run in TrainingRun.objects.filter(
            status=TrainingRun.Status.SUCCEEDED, engine_mode=engine, report__has_key="training"
        ).order_by("-finished_at")[:5]
    ]
    return budget_plan(
        photos=round(photos),
        individuals=round(individuals),
        hyperparameters=hp,
        rate=rate_from_runs(trainings),
        cached=engine == "cached",
    )
