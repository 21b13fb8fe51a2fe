"""Promoting a trained model: re-embed the species, switch when every vector exists, roll back.

Ranking keeps using ``SpeciesModel.model_version`` (and its vectors) while the species is
re-embedded under ``pending_version``. The switch
(:func:`identification.services.model_switch.species_model_switch_if_ready`) happens only
when the database says every annotation of the species has a vector under the pending
version; the embedding service asks for it after each batch under a pending version, and
the job sweep checks again (:func:`promotions_switch_check`). Pages only read.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from catalogue.models import Species
from identification.models import ModelVersion, SpeciesModel
from identification.services.calibration import calibration_request
from identification.services.matching import species_identifications_refresh
from identification.services.model_switch import (
    species_model_switch_if_ready,
    species_version_promote,
)
from identification.services.search import embedding_index_ensure
from training.models import TrainingRun
from training.selectors import promotion_warnings
from training.services.runs import run_log
from wildweb.errors import ConflictError, ServiceError


def candidate_version_ensure(*, run: TrainingRun) -> ModelVersion:
    """The model version made from a succeeded run's model (created once)."""
    if run.candidate_version_id:
        return run.candidate_version
    if run.status != TrainingRun.Status.SUCCEEDED or not run.report.get("candidate"):
        raise ServiceError("Only a run that succeeded can be promoted.")
    candidate = run.report["candidate"]
    version, _ = ModelVersion.objects.get_or_create(
        name=f"run{run.pk}-{run.species.slug}"[:100],
        defaults={
            "backbone": candidate["backbone"],
            "weights": candidate["model_path"],
            "embedding_dim": candidate["embedding_dim"],
            "image_size": candidate["image_size"],
            "metrics": {
                k: run.report.get(k)
                for k in ("before", "after", "zero_shot", "recommended_ranking_method")
            },
        },
    )
    TrainingRun.objects.filter(pk=run.pk).update(candidate_version=version)
    run.candidate_version = version
    return version


def model_promote(*, run: TrainingRun, confirmed: bool = False) -> SpeciesModel:
    """Make a run's model the species' pending version and re-embed every annotation under it.

    Only the run's species switches; every other species keeps its own version, so a model
    that forgot another species (flagged in the report) never ranks that species.

    Args:
        run: A succeeded run.
        confirmed: The admin saw the report's warnings (small held-out set, other species
            losing top-1) and promotes anyway. Without it a run with warnings is refused.

    Raises:
        ServiceError: The run did not succeed, its model is already the active one, or it has
            warnings and ``confirmed`` is false.
    """
    warnings = promotion_warnings(report=run.report or {})
    if warnings and not confirmed:
        raise ServiceError("Confirm to promote despite: " + " ".join(warnings), field="confirm")
    with transaction.atomic():
        version = candidate_version_ensure(run=run)
        setting = species_version_promote(species=run.species, version=version)
        run_log(run_id=run.pk, line=f"Promoted as {version.name}; re-embedding {run.species}.")
    return setting


def model_rollback(*, species: Species) -> SpeciesModel:
    """Go back to the previous version in one step (its vectors were kept), then rank every
    undecided animal of the species again with it and choose its ranking method again
    (a promoted version's switch asks for that itself, in ``species_model_switch_if_ready``)."""
    with transaction.atomic():
        setting = SpeciesModel.objects.select_for_update().filter(species=species).first()
        if setting is None or setting.previous_version_id is None:
            raise ConflictError(f"{species} has no previous model version to go back to.")
        embedding_index_ensure(species_id=species.pk, version=setting.previous_version)
        setting.model_version_id, setting.previous_version_id = (
            setting.previous_version_id,
            setting.model_version_id,
        )
        setting.pending_version = None
        setting.switched_at = timezone.now()
        setting.save(
            update_fields=["model_version", "previous_version", "pending_version", "switched_at"]
        )
        species_identifications_refresh(species_id=species.pk)
        calibration_request(species_id=species.pk, because="rolled back")
    return setting


def promotions_switch_check() -> list[int]:
    """Switch every species whose re-embedding has finished (the periodic sweep's part).

    Returns:
        Ids of the species that switched.
    """
    return [
        setting.species_id
        for setting in SpeciesModel.objects.filter(pending_version__isnull=False).select_related(
            "species"
        )
        if species_model_switch_if_ready(species=setting.species)
    ]
