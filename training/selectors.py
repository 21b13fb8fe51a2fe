"""Reads of training: runs, species pages, chart data."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from catalogue.models import Species
from identification.models import SpeciesModel
from training.models import TrainingRun


def training_run_list(*, species: Species | None = None) -> QuerySet[TrainingRun]:
    runs = TrainingRun.objects.select_related("species", "base_version", "candidate_version")
    return runs.filter(species=species) if species is not None else runs


def species_overview_list() -> list[dict[str, Any]]:
    """Every species with its active model and counts, for the training index page."""
    from django.db.models import Count, Q

    species = Species.objects.annotate(
        # A merged-away individual lives on in its survivor; counting both counts one twice.
        n_individuals=Count("individuals", filter=Q(individuals__merged_into__isnull=True),
                            distinct=True),
        n_identified=Count("annotations", filter=Q(annotations__individual__isnull=False),
                           distinct=True),
    ).order_by("name")
    settings = {s.species_id: s for s in SpeciesModel.objects.select_related(
        "model_version", "pending_version")}
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

    loss = " ".join(f"{x(p['step'])},{round(height * (1 - p['loss'] / max_loss), 1)}"
                    for p in points)
    accuracy = " ".join(f"{x(p['step'])},{round(height * (1 - p['validation_top1']), 1)}"
                        for p in top1)
    return {"width": width, "height": height, "loss": loss, "top1": accuracy,
            "max_loss": round(max_loss, 3), "last_step": last_step}
