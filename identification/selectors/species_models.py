"""Which model ranks a species, how far re-embedding under a pending one has got, and whether
its ranking method is being chosen."""

from __future__ import annotations

from django.db.models import Count, Q

from catalogue.models import Annotation
from identification.models import (
    CalibrationJob,
    EmbeddingJob,
    SpeciesModel,
)


def species_model_get(*, species_id: int) -> SpeciesModel | None:
    """The species' model setting as stored (``None``: it ranks with version 0); never creates."""
    return (
        SpeciesModel.objects.select_related("model_version", "previous_version", "pending_version")
        .filter(species_id=species_id)
        .first()
    )


def reembedding_progress(*, setting: SpeciesModel | None) -> dict[str, int] | None:
    """Annotations of the species embedded under its pending version so far (None: none pending)."""
    if setting is None or setting.pending_version_id is None:
        return None
    return embedding_progress(species_id=setting.species_id, version_id=setting.pending_version_id)


def embedding_progress(*, species_id: int, version_id: int) -> dict[str, int]:
    """How many of the species' annotations have a finished (or failed) job under a version."""
    total = Annotation.objects.filter(species_id=species_id).count()
    counts = EmbeddingJob.objects.filter(
        model_version_id=version_id, annotation__species_id=species_id
    ).aggregate(
        done=Count("pk", filter=Q(state=EmbeddingJob.State.DONE)),
        failed=Count("pk", filter=Q(state=EmbeddingJob.State.FAILED)),
    )
    done, failed = counts["done"], counts["failed"]
    return {
        "total": total,
        "done": done,
        "failed": failed,
        "percent": round(100 * done / total) if total else 100,
    }


def calibration_job_get(*, species_id: int) -> CalibrationJob | None:
    """The species' calibration job (``None``: its ranking method was never asked for)."""
    return CalibrationJob.objects.filter(species_id=species_id).first()
